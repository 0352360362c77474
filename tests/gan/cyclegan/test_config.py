"""The CycleGAN config's defaults are the published recipe."""

from __future__ import annotations

from harmonize.gan.cyclegan.config import CycleGANConfig


def test_config_defaults_are_the_published_recipe() -> None:
    config = CycleGANConfig()
    assert (config.ngf, config.ndf, config.n_blocks, config.n_layers_d) == (64, 64, 9, 3)
    assert (config.lambda_cycle, config.lambda_identity, config.pool_size) == (10.0, 0.5, 50)
    assert (config.lr, config.beta1, config.beta2) == (2e-4, 0.5, 0.999)
    assert config.gan_loss == "least_squares"
