"""The CycleGAN config's defaults are the published recipe."""

from __future__ import annotations

from harmonize.gan.cyclegan.config import CycleGANConfig


def test_config_defaults_are_the_published_recipe() -> None:
    config = CycleGANConfig()
    assert (config.ngf, config.ndf, config.n_blocks, config.n_layers_d) == (64, 64, 9, 3)
    assert (config.lambda_cycle, config.lambda_identity, config.pool_size) == (10.0, 0.5, 50)
    assert (config.lr, config.beta1, config.beta2) == (2e-4, 0.5, 0.999)
    assert config.gan_loss == "least_squares"


def test_residual_generators_are_an_option_that_the_saved_config_rebuilds(tiny_recipe) -> None:
    import pytest
    import torch

    from harmonize.errors import ConfigError
    from harmonize.gan.cyclegan.networks import build_generator

    assert CycleGANConfig().residual is False
    with pytest.raises(ConfigError, match="residual must be true or false"):
        CycleGANConfig.from_dict({"residual": "yes"})
    recipe = tiny_recipe("cyclegan", model={"residual": True})
    assert recipe.model_config()["residual"] is True
    generator = build_generator(recipe.model_config())
    assert generator.residual
    generator.load_state_dict(recipe.generator_state())
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(generator(x), recipe.generators.g_ab(x))
