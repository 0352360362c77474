"""The CycleGAN model settings (YAML's ``model:`` section), validated once.

Example::

    config = CycleGANConfig.from_dict({"ngf": 32, "lambda_identity": 0.0})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harmonize.gan.losses import GAN_LOSSES
from harmonize.validate import check_choice, check_int, check_number, from_mapping, set_field


@dataclass(frozen=True)
class CycleGANConfig:
    """The CycleGAN recipe; the defaults are the published ones (Zhu et al. 2017).

    Args:
        ngf, ndf: filters of the generators' first layer and of the discriminators' first layer.
        n_blocks: residual blocks of each generator (9 for 256-px training crops).
        n_layers_d: stride-2 layers of the PatchGAN (3: 70x70 patches).
        lambda_cycle: weight of both cycle-consistency L1 losses (A->B->A and B->A->B).
        lambda_identity: identity L1 weight as a fraction of lambda_cycle (0 turns it off).
        pool_size: fakes kept for the discriminators (0: always the latest fakes).
        lr, beta1, beta2: Adam's, for both optimizers.
        gan_loss: ``least_squares`` (LSGAN, the published choice) or ``vanilla``.
    """

    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gan_loss: str = "least_squares"

    def __post_init__(self) -> None:
        for name in ("ngf", "ndf", "n_layers_d"):
            check_int("cyclegan", name, getattr(self, name), low=1)
        for name in ("n_blocks", "pool_size"):
            check_int("cyclegan", name, getattr(self, name), low=0)
        # Numbers are stored as floats (YAML 1.1 reads an unquoted 1e-3 as text).
        for name in ("lambda_cycle", "lambda_identity"):
            set_field(self, name, check_number("cyclegan", name, getattr(self, name), low=0))
        set_field(self, "lr", check_number("cyclegan", "lr", self.lr, low=0, low_open=True))
        for name in ("beta1", "beta2"):
            beta = check_number(
                "cyclegan", name, getattr(self, name), low=0, high=1, high_open=True
            )
            set_field(self, name, beta)
        check_choice("cyclegan", "gan_loss", self.gan_loss, sorted(GAN_LOSSES))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> CycleGANConfig:
        """A config from plain values (YAML's ``model:`` section); unknown keys are an error."""
        return from_mapping(cls, values, "cyclegan model")
