"""The UNIT model settings (YAML's ``model:`` section), validated once.

Example::

    config = UNITConfig.from_dict({"ngf": 32, "n_blocks": 4, "n_shared_blocks": 2})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harmonize.gan.config import check_float, check_optimizer_and_loss
from harmonize.validate import FieldError, check_int, from_mapping

LOSS_WEIGHTS = ("lambda_gan", "lambda_recon", "lambda_kl", "lambda_cycle", "lambda_cycle_kl")


@dataclass(frozen=True)
class UNITConfig:
    """The UNIT recipe; the defaults are the published ones (the paper and its configuration).

    Args:
        ngf: filters of the encoders' first layer (the latent has ``4 * ngf`` channels at a
            quarter of the image size: two stride-2 stages).
        ndf: filters of each discriminator's first layer.
        n_blocks: residual blocks of each encoder and each decoder, shared ones included.
        n_shared_blocks: how many of them are shared between the domains (the encoders' last,
            the decoders' first); 1 .. n_blocks.
        n_layers_d: stride-2 4x4 convolutions of each discriminator scale.
        n_scales_d: image scales each discriminator judges (halved by 3x3 average pooling).
        lambda_gan, lambda_recon, lambda_kl, lambda_cycle, lambda_cycle_kl: loss weights.
        lr, beta1, beta2, weight_decay: Adam's, for both optimizers.
        lr_step_size: steps between learning-rate multiplications by ``lr_gamma``; None: a tenth
            of the training steps (the published 100 000 of 1 000 000 iterations).
        lr_gamma: the step decay's factor.
        gan_loss: ``least_squares`` (LSGAN, the published choice) or ``vanilla``.
    """

    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 4
    n_shared_blocks: int = 1
    n_layers_d: int = 4
    n_scales_d: int = 3
    lambda_gan: float = 1.0
    lambda_recon: float = 10.0
    lambda_kl: float = 0.01
    lambda_cycle: float = 10.0
    lambda_cycle_kl: float = 0.01
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    lr_step_size: int | None = None
    lr_gamma: float = 0.5
    gan_loss: str = "least_squares"

    def __post_init__(self) -> None:
        for name in ("ngf", "ndf", "n_blocks", "n_shared_blocks", "n_layers_d", "n_scales_d"):
            check_int("unit", name, getattr(self, name), low=1)
        if self.n_shared_blocks > self.n_blocks:
            raise FieldError(
                f"unit n_shared_blocks must be at most n_blocks ({self.n_blocks}), "
                f"got {self.n_shared_blocks}",
                "n_shared_blocks",
            )
        for name in (*LOSS_WEIGHTS, "weight_decay"):
            check_float(self, "unit", name, low=0)
        if self.lr_step_size is not None:  # None: steps // 10
            check_int("unit", "lr_step_size", self.lr_step_size, low=1)
        check_float(self, "unit", "lr_gamma", low=0, high=1, low_open=True)
        check_optimizer_and_loss(self, "unit")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> UNITConfig:
        """A config from plain values (YAML's ``model:`` section); unknown keys are an error."""
        return from_mapping(cls, values, "unit model")
