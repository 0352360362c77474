"""The CUT / FastCUT model settings (YAML's ``model:`` section), validated once.

Example::

    config = CUTConfig.from_dict({"ngf": 16, "n_blocks": 4, "nce_layers": [0, 4, 7, 10, 12]})
    fastcut = CUTConfig.from_dict({"nce_idt": False, "lambda_nce": 10.0})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harmonize.gan.config import check_float, check_optimizer_and_loss
from harmonize.validate import FieldError, check_bool, check_int, from_mapping, set_field

#: Encoder layers before the residual blocks in ``nce_layers``' indexing (three per convolution).
LAYERS_BEFORE_BLOCKS = 9


@dataclass(frozen=True)
class CUTConfig:
    """The CUT recipe; the defaults are the published CUT ones (the paper and its code). FastCUT
    is ``nce_idt: false`` with ``lambda_nce: 10``.

    Args:
        ngf, ndf, n_blocks, n_layers_d: as CycleGAN's (the same ResNet generator and PatchGAN).
        nce_layers: the generator encoder's layers whose features are contrasted, increasing.
            0 is the input image; 1-3 the first convolution's conv, norm and ReLU outputs; 4-6
            and 7-9 those of the two stride-2 convolutions; ``10 + i`` residual block i's
            output. The default (0, 4, 7, 10, 14) is the paper's ``0,4,8,12,16`` (the input,
            both downsampling convolutions, residual blocks 1 and 5), whose indexing also counts
            a padding layer and two anti-aliasing layers this generator does not have.
        nce_t: the PatchNCE temperature.
        num_patches: patch positions sampled per layer (the same for every image of a batch and
            for both sides of the contrast); all of a smaller feature map.
        netf_nc: width of both layers of each patch MLP head (the code's ``netF_nc``).
        lambda_gan, lambda_nce: loss weights.
        nce_idt: also contrast target images with their own translation, NCE(y, G(y)) (CUT);
            false: FastCUT.
        lr, beta1, beta2: Adam's, for both optimizers (the generator with the heads, and D).
        gan_loss: ``least_squares`` (LSGAN, the published choice) or ``vanilla``.
    """

    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    nce_layers: tuple[int, ...] = (0, 4, 7, 10, 14)
    nce_t: float = 0.07
    num_patches: int = 256
    netf_nc: int = 256
    lambda_gan: float = 1.0
    lambda_nce: float = 1.0
    nce_idt: bool = True
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gan_loss: str = "least_squares"

    def __post_init__(self) -> None:
        for name in ("ngf", "ndf", "n_layers_d", "num_patches", "netf_nc"):
            check_int("cut", name, getattr(self, name), low=1)
        check_int("cut", "n_blocks", self.n_blocks, low=0)
        set_field(self, "nce_layers", self._checked_layers())
        check_float(self, "cut", "nce_t", low=0, low_open=True)
        for name in ("lambda_gan", "lambda_nce"):
            check_float(self, "cut", name, low=0)
        check_bool("cut", "nce_idt", self.nce_idt)
        check_optimizer_and_loss(self, "cut")

    def _checked_layers(self) -> tuple[int, ...]:
        """``nce_layers`` as a tuple, or a FieldError: indices of this encoder, increasing."""
        top = LAYERS_BEFORE_BLOCKS + self.n_blocks
        value = self.nce_layers
        layers = tuple(value) if isinstance(value, list | tuple) else ()
        fine = (
            bool(layers)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
            and layers[0] >= 0
            and layers[-1] <= top
            and all(a < b for a, b in zip(layers, layers[1:], strict=False))
        )
        if not fine:
            raise FieldError(
                f"cut nce_layers must be increasing encoder layer indices in 0..{top} (0 the "
                f"input, {LAYERS_BEFORE_BLOCKS + 1}.. the residual blocks), got {value!r}",
                "nce_layers",
            )
        return layers

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> CUTConfig:
        """A config from plain values (YAML's ``model:`` section); unknown keys are an error."""
        return from_mapping(cls, values, "cut model")
