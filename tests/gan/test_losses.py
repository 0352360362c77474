"""The GAN losses against their definitions, and UNIT's KL term against a Monte-Carlo estimate."""

from __future__ import annotations

import pytest
import torch

from harmonize.errors import ConfigError
from harmonize.gan.losses import GAN_LOSSES, gan_loss, kl_unit_variance


def test_gan_losses_are_least_squares_and_cross_entropy_on_logits() -> None:
    logits = torch.tensor([[-2.0, 0.0], [0.5, 3.0]])
    least_squares, vanilla = gan_loss("least_squares"), gan_loss("vanilla")
    assert float(least_squares(logits, True)) == pytest.approx(float(((logits - 1) ** 2).mean()))
    assert float(least_squares(logits, False)) == pytest.approx(float((logits**2).mean()))
    p = torch.sigmoid(logits)
    assert float(vanilla(logits, True)) == pytest.approx(float(-torch.log(p).mean()))
    assert float(vanilla(logits, False)) == pytest.approx(float(-torch.log(1 - p).mean()))
    assert least_squares(logits.bfloat16(), True).dtype == torch.float32  # losses stay float32
    assert sorted(GAN_LOSSES) == ["least_squares", "vanilla"]
    with pytest.raises(ConfigError, match="wasserstein"):
        gan_loss("wasserstein")


def test_kl_of_a_unit_variance_gaussian_is_the_mean_square_of_its_mean() -> None:
    mu = torch.tensor([[0.0, 1.0], [2.0, -3.0]])
    assert float(kl_unit_variance(mu)) == pytest.approx((0 + 1 + 4 + 9) / 4)
    # Monte-Carlo check of KL(N(mu, 1) || N(0, 1)) = mu^2 / 2 per element.
    g = torch.Generator().manual_seed(0)
    samples = 1.5 + torch.randn(400_000, generator=g)
    log_ratio = -0.5 * (samples - 1.5) ** 2 + 0.5 * samples**2
    assert float(log_ratio.mean()) == pytest.approx(1.5**2 / 2, rel=0.02)
