"""The checks every GAN config shares: numbers stored as floats, Adam's lr and betas, the GAN
loss. ``CycleGANConfig``, ``UNITConfig`` and ``CUTConfig`` call them from their
``__post_init__``."""

from __future__ import annotations

from typing import Any

from harmonize.gan.losses import GAN_LOSSES
from harmonize.validate import check_choice, check_number, set_field


def check_float(config: Any, owner: str, name: str, **bounds: Any) -> None:
    """Check the number ``config.<name>`` (``check_number``'s bounds) and store it as a float:
    YAML 1.1 reads an unquoted ``1e-3`` as text."""
    set_field(config, name, check_number(owner, name, getattr(config, name), **bounds))


def check_optimizer_and_loss(config: Any, owner: str) -> None:
    """``lr`` > 0, ``beta1`` and ``beta2`` in [0, 1), ``gan_loss`` a key of ``GAN_LOSSES``."""
    check_float(config, owner, "lr", low=0, low_open=True)
    for name in ("beta1", "beta2"):
        check_float(config, owner, name, low=0, high=1, high_open=True)
    check_choice(owner, "gan_loss", config.gan_loss, sorted(GAN_LOSSES))
