"""How to train a GAN harmonizer: ``TrainConfig`` (validated once) and its YAML loader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmonize.models.registry import NEURAL, gan_parts, method_names
from harmonize.validate import FieldError, check_bool, check_choice, check_int, load_config

if TYPE_CHECKING:
    import torch

    from harmonize.io.storage import Storage

PRECISIONS = ("auto", "bf16", "fp32")
#: ``compile: auto`` compiles on CUDA for runs at least this long (compiling the four networks
#: costs a minute or two, which a short run does not win back).
COMPILE_MIN_STEPS = 1_000


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` made concrete for ``device``: bf16 on CUDA, fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" else "fp32"


@dataclass(frozen=True)
class TrainConfig:
    """How to train a GAN harmonizer. Every field can be set in YAML (``load_train_config``).

    Args:
        method: a trainable method of the registry (``cyclegan``, ``unit``, ``cut``).
        steps: optimisation steps (one batch per rank each). 20 000 steps at batch 1 is ~30
            passes over a 662-image site (Shenzhen); the published 200-epoch recipe is ~130 000.
        decay_start: step where the LR starts decaying linearly to 0 at ``steps``
            (None: ``steps // 2``, the published half-constant, half-decay schedule). CycleGAN
            and CUT only: UNIT halves the LR every ``model.lr_step_size`` steps, as published.
        batch_size: images per site per step per rank (1, as published).
        crop_size: side of the random square training crops (a multiple of 4).
        load_size: short side every image is resized to before cropping (286 for 256 crops).
        flip: random horizontal flips. Off by default (the published recipe flips): a mirrored
            chest radiograph is not an image either site produces.
        seed: weights, sampling and image pools (rank r samples from a stream seeded (seed, r)).
        log_every: steps per logged mean of the losses (metrics.jsonl, TensorBoard, report).
        checkpoint_every: steps between checkpoints (one is always written at the end).
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
        channels_last: ``auto`` (on CUDA), true or false.
        compile: ``torch.compile`` the networks: ``auto`` (on CUDA for runs of at least
            ``COMPILE_MIN_STEPS`` steps), true or false.
        cuda_graphs: replay the compiled networks as CUDA graphs (``reduce-overhead``; CUDA,
            compile on, one GPU). Off by default until ``harmonize bench device`` has measured
            it on the GPUs it is meant for.
        On CUDA, training also uses Adam's fused kernels and cuDNN's autotuner (fixed crop
        sizes): the tuned configuration ``harmonize bench train`` measures.
        model: the method's model settings (e.g. ``{"ngf": 8, "n_blocks": 2}``); see
            ``CycleGANConfig``, ``UNITConfig``, ``CUTConfig``.
        validation_images: source images harmonized at the end for the model card.
    """

    method: str = "cyclegan"
    steps: int = 20_000
    decay_start: int | None = None
    batch_size: int = 1
    crop_size: int = 256
    load_size: int = 286
    flip: bool = False
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 2_000
    precision: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool | str = "auto"
    cuda_graphs: bool = False
    model: Mapping[str, Any] = field(default_factory=dict)
    validation_images: int = 8

    def __post_init__(self) -> None:
        owner = "training"
        check_choice(owner, "method", self.method, method_names(NEURAL))
        for name in ("steps", "batch_size", "crop_size", "load_size", "log_every"):
            check_int(owner, name, getattr(self, name), low=1)
        check_int(owner, "checkpoint_every", self.checkpoint_every, low=1)
        for name in ("seed", "validation_images"):
            check_int(owner, name, getattr(self, name), low=0)
        if self.decay_start is not None:
            check_int(owner, "decay_start", self.decay_start, low=0, high=self.steps)
        if self.crop_size % 4:
            raise FieldError(
                f"training crop_size must be a multiple of 4 (the generator halves it twice), "
                f"got {self.crop_size}",
                "crop_size",
            )
        if self.crop_size > self.load_size:
            raise FieldError(
                f"training crop_size {self.crop_size} is larger than load_size {self.load_size}; "
                "crops are cut from images whose short side is load_size",
                "crop_size",
            )
        check_choice(owner, "precision", self.precision, PRECISIONS)
        for name in ("channels_last", "compile"):
            value = getattr(self, name)
            if not isinstance(value, bool) and value != "auto":
                raise FieldError(
                    f"training {name} must be auto, true or false, got {value!r}", name
                )
        check_bool(owner, "flip", self.flip)
        check_bool(owner, "cuda_graphs", self.cuda_graphs)
        if not isinstance(self.model, Mapping):
            raise FieldError(
                f"training model must be a mapping of model settings, got {self.model!r}", "model"
            )
        gan_parts(self.method).parse_config(self.model)  # raises ConfigError naming bad settings

    @property
    def decay_start_step(self) -> int:
        return self.steps // 2 if self.decay_start is None else self.decay_start

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"] = dict(self.model)
        return out

    def resolved(self, device: torch.device) -> dict[str, Any]:
        """The config as plain values with its automatic choices made for ``device`` (what a
        checkpoint and the model card record)."""
        cuda = device.type == "cuda"
        compile = (
            cuda and self.steps >= COMPILE_MIN_STEPS if self.compile == "auto" else self.compile
        )
        return {
            **self.to_dict(),
            "decay_start": self.decay_start_step,
            "precision": resolve_precision(self.precision, device),
            "channels_last": cuda if self.channels_last == "auto" else bool(self.channels_last),
            "compile": bool(compile),
            "fused_optimizer": cuda,
            "cudnn_benchmark": cuda,
        }


def load_train_config(
    path: str | Path | None = None, storage: Storage | None = None, **overrides: Any
) -> TrainConfig:
    """A validated ``TrainConfig`` from a YAML file (local or s3://; None: the defaults) and
    keyword overrides (None values are ignored; ``model`` overrides merge into its section).

    Raises:
        ConfigError: unreadable YAML, unknown keys (named), or invalid values; one line that
            names the file, the line and the key.
    """
    return load_config(
        TrainConfig, path, storage, what="training", overrides=overrides, sections=("model",)
    )
