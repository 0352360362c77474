"""The GAN losses (on discriminator logits) by name, and UNIT's KL term of a unit-variance latent.

Example::

    loss = gan_loss("least_squares")
    d_loss = 0.5 * (loss(d(real), True) + loss(d(fake), False))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from harmonize.errors import ConfigError

GanLoss = Callable[[torch.Tensor, bool], torch.Tensor]
"""A GAN loss: prediction logits, and whether the images they score should count as real."""


def _target(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    return torch.ones_like(prediction) if real else torch.zeros_like(prediction)


def least_squares_gan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """LSGAN (Mao et al. 2017), CycleGAN's choice: mean (D(x) - 1)^2 for real, D(x)^2 for fake."""
    prediction = prediction.float()
    return F.mse_loss(prediction, _target(prediction, real))


def vanilla_gan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """The original GAN's cross-entropy on logits."""
    prediction = prediction.float()
    return F.binary_cross_entropy_with_logits(prediction, _target(prediction, real))


GAN_LOSSES: dict[str, GanLoss] = {
    "least_squares": least_squares_gan_loss,
    "vanilla": vanilla_gan_loss,
}


def gan_loss(name: str) -> GanLoss:
    """The GAN loss called ``name`` (a key of ``GAN_LOSSES``), or a ConfigError naming them."""
    if name not in GAN_LOSSES:
        raise ConfigError(f'unknown gan_loss "{name}"; choose one of {sorted(GAN_LOSSES)}')
    return GAN_LOSSES[name]


def kl_unit_variance(mu: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, I) || N(0, I)) up to the constant factor: the mean of ``mu ** 2``."""
    return mu.float().pow(2).mean()
