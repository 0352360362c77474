"""How to train the target-site classifier: ``ClassifierConfig``, its geometric ``Augmentation``
and the YAML loader.

Augmentation is geometric only (small shifts and zooms, horizontal flips), never intensity or
contrast, so that the classifier stays sensitive to a site's intensity look, as in the paper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmonize.training.config import PRECISIONS, resolve_precision
from harmonize.validate import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    from_mapping,
    load_config,
    set_field,
)

if TYPE_CHECKING:
    import torch

    from harmonize.io.storage import Storage

BLOCKS = (2, 2, 2, 2)  # BasicBlocks per stage: ResNet-18
MIN_INPUT_SIZE = 32  # the network halves the image five times


@dataclass(frozen=True)
class Augmentation:
    """Geometric training augmentation (never intensity: the classifier must feel site shifts).

    Args:
        shift: largest translation per axis, as a fraction of the image side.
        scale: largest zoom in or out, as a fraction (0.1: 0.9x to 1.1x).
        flip: random horizontal flips.
    """

    shift: float = 0.05
    scale: float = 0.1
    flip: bool = True

    def __post_init__(self) -> None:
        for name in ("shift", "scale"):
            set_field(
                self,
                name,
                check_number("augmentation", name, getattr(self, name), low=0.0, high=0.5),
            )
        check_bool("augmentation", "flip", self.flip)

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.scale > 0 or self.flip


@dataclass(frozen=True)
class ClassifierConfig:
    """How to train the target-site classifier. Every field can be set in YAML
    (``load_classifier_config``; ``jobs/configs/classifier.yaml`` lists them with comments).

    Args:
        steps: optimisation steps (one batch per rank each).
        batch_size: images per step per rank.
        lr: Adam's peak learning rate (cosine decay to 0 at ``steps``).
        weight_decay: Adam's L2 penalty.
        input_size: side of the square the network sees (short side resized, then center crop).
        width: channels of the first stage (64 = ResNet-18; 16 for quick CPU runs).
        seed: weights and sampling (rank r samples from a stream seeded (seed, r)).
        val_fraction: share of each class held out for validation (split by image_id hash).
        log_every: steps per logged mean training loss (metrics.jsonl, TensorBoard, report).
        validate_every: steps between validation passes (always at the last step too).
        checkpoint_every: steps between checkpoints (one is always written at the end).
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
        augmentation: geometric augmentation (`Augmentation`).
    """

    steps: int = 3_000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    input_size: int = 256
    width: int = 64
    seed: int = 0
    val_fraction: float = 0.2
    log_every: int = 50
    validate_every: int = 500
    checkpoint_every: int = 500
    precision: str = "auto"
    augmentation: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        owner = "classifier"
        minimums = {"steps": 1, "batch_size": 1, "input_size": MIN_INPUT_SIZE, "width": 1}
        minimums |= {"seed": 0, "log_every": 1, "validate_every": 1, "checkpoint_every": 1}
        for name, minimum in minimums.items():
            check_int(owner, name, getattr(self, name), low=minimum)
        set_field(self, "lr", check_number(owner, "lr", self.lr, low=0.0, low_open=True))
        set_field(
            self, "weight_decay", check_number(owner, "weight_decay", self.weight_decay, low=0.0)
        )
        set_field(
            self,
            "val_fraction",
            check_number(
                owner,
                "val_fraction",
                self.val_fraction,
                low=0.0,
                high=1.0,
                low_open=True,
                high_open=True,
            ),
        )
        check_choice(owner, "precision", self.precision, PRECISIONS)
        hint = " (there is no intensity augmentation, on purpose)"
        set_field(
            self,
            "augmentation",
            from_mapping(Augmentation, self.augmentation, "augmentation", hint),
        )

    def model_config(self) -> dict[str, Any]:
        return {"blocks": list(BLOCKS), "width": self.width, "input_size": self.input_size}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self, device: torch.device) -> dict[str, Any]:
        """The config as plain values with ``precision`` made concrete for ``device``."""
        return {**self.to_dict(), "precision": resolve_precision(self.precision, device)}


def load_classifier_config(
    path: str | Path | None = None, storage: Storage | None = None, **overrides: Any
) -> ClassifierConfig:
    """A validated ``ClassifierConfig`` from a YAML file (local or s3://; None: the defaults)
    and keyword overrides (None values are ignored; ``augmentation`` overrides merge into its
    section).

    Raises:
        ConfigError: unreadable YAML, unknown keys (named), or invalid values; one line that
            names the file, the line and the key.
    """
    return load_config(
        ClassifierConfig,
        path,
        storage,
        what="classifier",
        overrides=overrides,
        sections=("augmentation",),
    )
