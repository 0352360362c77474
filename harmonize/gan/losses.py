"""The GAN losses (on discriminator logits) by name, UNIT's KL term of a unit-variance latent and
CUT's PatchNCE loss.

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


def patch_nce_loss(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """PatchNCE (Park et al. 2020), per image: the mean over its S patches of the cross entropy of
    picking the key at the query's own position among the S keys of the same image (the
    positive; the other S - 1 patches are the negatives), similarities divided by
    ``temperature``.

    Args:
        queries, keys: (N, S, C) L2-normalised features at the same S positions of each image:
            queries from the translation, keys from its input (no gradient flows into them).

    Returns:
        (N,) float32. The paper's form (positive logit first, then the negatives with the
        diagonal masked out) has the same logits, so the same loss.
    """
    queries, keys = queries.float(), keys.float().detach()
    logits = torch.bmm(queries, keys.transpose(1, 2)) / temperature  # [n, i, j] = q_i . k_j / t
    n, s = logits.shape[:2]
    targets = torch.arange(s, device=logits.device).repeat(n)
    return F.cross_entropy(logits.flatten(0, 1), targets, reduction="none").view(n, s).mean(1)
