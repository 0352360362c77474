"""The CycleGAN model settings (YAML's ``model:`` section), validated once.

Example::

    config = CycleGANConfig.from_dict({"ngf": 32, "lambda_identity": 0.0})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harmonize.gan.config import check_float, check_optimizer_and_loss
from harmonize.validate import check_bool, check_int, from_mapping


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
        residual: generators that learn the change from their input (``ResnetGenerator``'s
            ``residual``), not the published recipe; false by default.
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
    residual: bool = False

    def __post_init__(self) -> None:
        for name in ("ngf", "ndf", "n_layers_d"):
            check_int("cyclegan", name, getattr(self, name), low=1)
        for name in ("n_blocks", "pool_size"):
            check_int("cyclegan", name, getattr(self, name), low=0)
        for name in ("lambda_cycle", "lambda_identity"):
            check_float(self, "cyclegan", name, low=0)
        check_optimizer_and_loss(self, "cyclegan")
        check_bool("cyclegan", "residual", self.residual)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> CycleGANConfig:
        """A config from plain values (YAML's ``model:`` section); unknown keys are an error."""
        return from_mapping(cls, values, "cyclegan model")
