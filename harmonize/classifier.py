"""The target-site classifier: a 1-channel ResNet-18-style CNN (finding / no finding), its
preprocessing, its training loop (no Ray) with exact resume, and scoring of display images.

The evidence that harmonization helps is a *fixed* classifier trained only on the target site: it
scores the originals and the harmonized images of another site, and the ROC AUC should go up.
Augmentation is geometric only (small shifts and zooms, horizontal flips), never intensity or
contrast, so that the classifier stays sensitive to a site's intensity look, as in the paper.

Every image goes through ``classifier_levels`` (display [0, 1] -> short side ``input_size`` ->
center crop to a square -> 16-bit levels) and ``levels_to_model`` (-> [-1, 1]) in training and in
scoring alike. A trained model is ``classifier.json`` (model config, SHA-256 of the weights, model
card) next to ``weights.safetensors``; loading never unpickles code.

Example::

    config = load_classifier_config("jobs/configs/classifier.yaml", steps=500)
    data = prepare_classifier_data("s3://pacs/shenzhen", "s3://pacs/labels.parquet", 256)
    result = train_classifier(config, data, "s3://models/classifier-sz")
    scores = load_classifier("s3://models/classifier-sz").score(display_images)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harmonize import __version__
from harmonize.device import pick_device
from harmonize.errors import ConfigError, HarmonizeError, ModelError
from harmonize.imaging.preprocess import from_uint16, resize_short_side, to_model_range, to_uint16
from harmonize.io.archive import list_images
from harmonize.io.labels import finding_labels, read_labels
from harmonize.io.storage import Storage
from harmonize.methods.base import check_display_image
from harmonize.models.files import CLASSIFIER_FILE, load_weights, read_model, write_model
from harmonize.training import (
    CHECKPOINT_FORMAT,
    MetricsLog,
    checkpoint_uri,
    latest_checkpoint,
    load_checkpoint,
    random_state,
    restore_random_state,
    save_checkpoint,
)

logger = logging.getLogger(__name__)

METHOD = "classifier"
BLOCKS = (2, 2, 2, 2)  # BasicBlocks per stage: ResNet-18
MIN_INPUT_SIZE = 32  # the network halves the image five times
EVAL_BATCH = 64
CLASS_NAMES = {0: "no_finding", 1: "finding"}


# -- configuration ---------------------------------------------------------------------------------
def _number(owner: str, name: str, value: Any) -> float:
    """A float setting; also accepts YAML 1.1's unquoted ``1e-3``, which PyYAML reads as text."""
    if isinstance(value, bool):
        raise ConfigError(f"{owner} {name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{owner} {name} must be a number, got {value!r}") from err


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
        for name, upper in (("shift", 0.5), ("scale", 0.5)):
            value = _number("augmentation", name, getattr(self, name))
            if not 0.0 <= value <= upper:
                raise ConfigError(f"augmentation {name} must be in [0, {upper}], got {value}")
            object.__setattr__(self, name, value)
        if not isinstance(self.flip, bool):
            raise ConfigError(f"augmentation flip must be true or false, got {self.flip!r}")

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.scale > 0 or self.flip

    @classmethod
    def from_value(cls, value: Augmentation | Mapping[str, Any]) -> Augmentation:
        if isinstance(value, Augmentation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"augmentation must be a mapping of shift, scale and flip, got {value!r}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                f"unknown augmentation settings {unknown}; known: {sorted(known)} (there is no "
                "intensity augmentation, on purpose)"
            )
        return cls(**value)


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
        minimums = {
            "steps": 1,
            "batch_size": 1,
            "input_size": MIN_INPUT_SIZE,
            "width": 1,
            "seed": 0,
            "log_every": 1,
            "validate_every": 1,
            "checkpoint_every": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(
                    f"classifier {name} must be an integer >= {minimum}, got {value!r}"
                )
        for name in ("lr", "weight_decay", "val_fraction"):
            object.__setattr__(self, name, _number("classifier", name, getattr(self, name)))
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(
                f"classifier lr must be > 0 and weight_decay >= 0, got lr={self.lr} "
                f"weight_decay={self.weight_decay}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}"
            )
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f'precision must be auto, bf16 or fp32, got "{self.precision}"')
        object.__setattr__(self, "augmentation", Augmentation.from_value(self.augmentation))

    def model_config(self) -> dict[str, Any]:
        return {"blocks": list(BLOCKS), "width": self.width, "input_size": self.input_size}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_classifier_config(
    path: str | Path | None = None, storage: Storage | None = None, **overrides: Any
) -> ClassifierConfig:
    """A validated ``ClassifierConfig`` from a YAML file (local or s3://) and keyword overrides.

    Overrides whose value is None are ignored (unset command-line options); ``augmentation``
    overrides are merged into the YAML's ``augmentation`` section.

    Raises:
        ConfigError: unreadable YAML, unknown keys (named), or invalid values.
    """
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load((storage or Storage()).read_text(str(path)))
        except (HarmonizeError, yaml.YAMLError) as err:
            raise ConfigError(f'cannot read the classifier config "{path}": {err}') from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f'"{path}" must hold a mapping of classifier settings, got {loaded!r}'
            )
        values = dict(loaded or {})
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "augmentation" and isinstance(value, Mapping):
            values[key] = {**dict(values.get(key) or {}), **value}
        else:
            values[key] = value
    known = {f.name for f in fields(ClassifierConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        source = f' in "{path}"' if path is not None else ""
        raise ConfigError(f"unknown classifier settings {unknown}{source}; known: {sorted(known)}")
    if values.get("augmentation") is None:
        values.pop("augmentation", None)
    return ClassifierConfig(**values)


# -- the network -----------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNetClassifier(nn.Module):
    """ResNet-18's layout for one grey channel and one logit: a 7x7 stride-2 stem and max pool,
    four stages of BasicBlocks (``width`` x 1, 2, 4, 8 channels, stride 2 from the second),
    global average pooling and a linear head. ``forward`` returns (N,) logits."""

    def __init__(self, width: int = 64, blocks: Sequence[int] = BLOCKS) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        in_channels = width
        for index, n_blocks in enumerate(blocks):
            channels = width * 2**index
            layers = []
            for block in range(n_blocks):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(BasicBlock(in_channels, channels, stride))
                in_channels = channels
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x)).mean(dim=(2, 3))
        return self.head(features)[:, 0]


def build_classifier(model_config: Mapping[str, Any]) -> ResNetClassifier:
    """The network described by a model config (``ClassifierConfig.model_config()``).

    Raises:
        ModelError: unknown keys or invalid values.
    """
    known = {"blocks", "width", "input_size"}
    unknown = sorted(set(model_config) - known)
    if unknown:
        raise ModelError(f"unknown classifier model settings {unknown}; known: {sorted(known)}")
    try:
        width = int(model_config["width"])
        blocks = [int(b) for b in model_config.get("blocks", BLOCKS)]
        input_size = int(model_config["input_size"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"classifier model config {dict(model_config)} is invalid: {err}") from err
    if width < 1 or input_size < MIN_INPUT_SIZE or not blocks or min(blocks) < 1:
        raise ModelError(f"classifier model config {dict(model_config)} is out of range")
    return ResNetClassifier(width, blocks)


def probabilities(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """P(finding) of a preprocessed (N, 1, S, S) batch: eval mode (batch norm with its running
    statistics, so a score never depends on the rest of the batch), fp32, no autograd."""
    model.eval()
    with torch.inference_mode():
        return torch.sigmoid(model(batch.float()).float())


# -- preprocessing (one path for training and scoring) ---------------------------------------------
def center_square(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` window of a 2-D image (edge-padded where a side is
    shorter, which ``resize_short_side`` never leaves)."""
    height, width = image.shape
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if pad_h or pad_w:
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        image = np.pad(image, pads, mode="edge")
        height, width = image.shape
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def classifier_levels(image: np.ndarray, input_size: int) -> np.ndarray:
    """A display image [0, 1] (any size) as the classifier keeps it: short side resized to
    ``input_size`` (antialiased), center-cropped to a square, 16-bit levels (error < 1e-5).

    Raises:
        ModelError: the image is not one 2-D array.
    """
    pixels = check_display_image(image)
    return to_uint16(center_square(resize_short_side(pixels, input_size), input_size))


def levels_to_model(levels: np.ndarray) -> torch.Tensor:
    """16-bit levels (..., S, S) -> float32 model values [-1, 1] (a new CPU tensor)."""
    return torch.from_numpy(to_model_range(from_uint16(levels)))


# -- training data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """Indices (sorted) of the training and validation images of a `ClassifierData`."""

    train: np.ndarray
    validation: np.ndarray


def _id_rank(image_id: str) -> str:
    return hashlib.sha256(image_id.encode("utf-8")).hexdigest()


def ids_digest(image_ids: Sequence[str]) -> str:
    """A short hash of a set of image ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(image_ids)).encode("utf-8")).hexdigest()[:16]


def split_by_image_id(image_ids: Sequence[str], labels: np.ndarray, val_fraction: float) -> Split:
    """A deterministic, stratified train/validation split.

    Within each class, images are ranked by the SHA-256 of their image_id and the first
    ``round(val_fraction * n)`` (at least 1, at most n - 1) go to validation. The split depends
    only on which image_ids each class holds, never on their order.

    Raises:
        ConfigError: a class has fewer than two images (one to train on, one to validate).
    """
    validation: list[int] = []
    for label, name in CLASS_NAMES.items():
        members = [i for i in range(len(image_ids)) if labels[i] == label]
        if len(members) < 2:
            raise ConfigError(
                f"the labelled images hold {len(members)} with label {label} ({name}); the "
                "classifier needs at least 2 of each class (one to train on, one to validate): "
                "label more images of that class or point --labels at the right table"
            )
        k = min(len(members) - 1, max(1, round(val_fraction * len(members))))
        validation += sorted(members, key=lambda i: (_id_rank(image_ids[i]), image_ids[i]))[:k]
    held_out = np.zeros(len(image_ids), dtype=bool)
    held_out[validation] = True
    return Split(np.flatnonzero(~held_out), np.flatnonzero(held_out))


@dataclass
class ClassifierData:
    """Labelled target-site images, decoded and preprocessed once (``classifier_levels``).

    ``images`` is (N, S, S) uint16, ``labels`` (N,) int64 in {0, 1} (1 = finding),
    ``image_ids`` the SOPInstanceUIDs. ``skipped`` counts the objects left out: ``unlabelled``
    (no label row, or a null label), ``unreadable`` and ``duplicate`` (a SOPInstanceUID seen
    before, in URI order).
    """

    images: np.ndarray
    labels: np.ndarray
    image_ids: list[str]
    input_size: int
    archive_uri: str = ""
    labels_uri: str = ""
    skipped: dict[str, int] = field(
        default_factory=lambda: {"unlabelled": 0, "unreadable": 0, "duplicate": 0}
    )

    def __post_init__(self) -> None:
        size = self.input_size
        if self.images.ndim != 3 or self.images.shape[1:] != (size, size):
            raise ConfigError(
                f"classifier images must be (N, {size}, {size}), got {self.images.shape}; build "
                "them with classifier.classifier_levels"
            )
        if self.images.dtype != np.uint16:
            raise ConfigError(f"classifier images must be uint16 levels, got {self.images.dtype}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not len(self.images) == len(self.labels) == len(self.image_ids):
            raise ConfigError(
                f"{len(self.images)} images, {len(self.labels)} labels and "
                f"{len(self.image_ids)} image ids: they must match one to one"
            )
        if not np.isin(self.labels, (0, 1)).all():
            raise ConfigError(f"labels must be 0 or 1, got {sorted(set(self.labels.tolist()))}")
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ConfigError("image ids must be unique")

    def split(self, val_fraction: float) -> Split:
        return split_by_image_id(self.image_ids, self.labels, val_fraction)

    def counts(self, indices: np.ndarray) -> dict[str, int]:
        """Images per class among ``indices``."""
        return {name: int((self.labels[indices] == c).sum()) for c, name in CLASS_NAMES.items()}

    def save(self, uri: str, storage: Storage | None = None) -> None:
        """Write everything as one .npz object (no pickled objects), whole or not at all."""
        meta = {
            "input_size": self.input_size,
            "archive_uri": self.archive_uri,
            "labels_uri": self.labels_uri,
            "skipped": self.skipped,
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            allow_pickle=False,
            meta=np.array(json.dumps(meta)),
            images=self.images,
            labels=self.labels,
            image_ids=np.array(self.image_ids, dtype=str),
        )
        (storage or Storage()).write(uri, buffer.getvalue())

    @classmethod
    def load(cls, uri: str, storage: Storage | None = None) -> ClassifierData:
        """Read what ``save`` wrote."""
        data = (storage or Storage()).read(uri)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                images, labels = npz["images"], npz["labels"]
                image_ids = [str(i) for i in npz["image_ids"]]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f'"{uri}" is not a harmonize classifier-data file: {err}') from err
        return cls(
            images,
            labels,
            image_ids,
            int(meta["input_size"]),
            meta["archive_uri"],
            meta["labels_uri"],
            dict(meta["skipped"]),
        )


def _decode_for_classifier(task: tuple[str, int, Storage]) -> tuple[str, np.ndarray | None, str]:
    from harmonize.dicom.decode import decode_dicom

    uri, input_size, storage = task
    try:
        decoded = decode_dicom(storage.read(uri))
        return decoded.meta.sop_instance_uid, classifier_levels(decoded.pixels, input_size), ""
    except HarmonizeError as err:
        return "", None, f"{uri}: {err}"


def prepare_classifier_data(
    archive_uri: str,
    labels_uri: str,
    input_size: int,
    storage: Storage | None = None,
    limit: int | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> ClassifierData:
    """Decode the archive (objects ending .dcm/.dicom, sorted; the first ``limit``), preprocess
    every image (``classifier_levels``) in a pool of threads, and join each to its label by
    image_id = SOPInstanceUID.

    Objects without a label, unreadable ones and repeated SOPInstanceUIDs are skipped and
    counted (``ClassifierData.skipped``).

    Raises:
        ConfigError: no labels table, no images, no labelled image, or labels of one class only.
    """
    from tqdm import tqdm

    store = storage or Storage()
    label_of = finding_labels(read_labels(labels_uri, store))
    objects = list_images(archive_uri, store, limit=limit)
    tasks = [(o.uri, input_size, store) for o in objects]
    images, labels, image_ids, errors = [], [], [], []
    seen: set[str] = set()
    skipped = {"unlabelled": 0, "unreadable": 0, "duplicate": 0}
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    with ThreadPoolExecutor(n_workers) as pool:
        results = pool.map(_decode_for_classifier, tasks)
        for image_id, levels, error in tqdm(
            results, total=len(tasks), desc="decode", disable=not progress, leave=False
        ):
            if levels is None:
                skipped["unreadable"] += 1
                errors.append(error)
            elif image_id not in label_of:
                skipped["unlabelled"] += 1
            elif image_id in seen:
                skipped["duplicate"] += 1
            else:
                seen.add(image_id)
                images.append(levels)
                labels.append(label_of[image_id])
                image_ids.append(image_id)
    if errors:
        logger.warning("skipped %d unreadable objects, e.g. %s", len(errors), errors[0])
    if not images:
        raise ConfigError(
            f'none of the {len(tasks)} objects under "{archive_uri}" has a label in '
            f'"{labels_uri}" (joined on SOPInstanceUID = image_id; {skipped["unreadable"]} '
            "unreadable): check that the labels table describes this archive"
        )
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(
            f'all {len(labels)} labelled images under "{archive_uri}" have label {classes[0]} '
            f"({CLASS_NAMES[classes[0]]}); the classifier needs images with and without findings"
        )
    return ClassifierData(
        np.stack(images), np.array(labels), image_ids, input_size, archive_uri, labels_uri, skipped
    )


def sample_batch(
    data: ClassifierData,
    indices: np.ndarray,
    rng: np.random.Generator,
    batch_size: int,
    augmentation: Augmentation,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch (with replacement) of the images at ``indices``, geometrically augmented:
    float32 (B, 1, S, S) in [-1, 1] and float32 (B,) labels. Every draw comes from ``rng``."""
    pick = indices[rng.integers(len(indices), size=batch_size)]
    x = levels_to_model(data.images[pick])[:, None]
    y = torch.from_numpy(data.labels[pick].astype(np.float32))
    if not augmentation.active:
        return x, y
    zoom = rng.uniform(1.0 - augmentation.scale, 1.0 + augmentation.scale, batch_size)
    shifts = rng.uniform(-augmentation.shift, augmentation.shift, (batch_size, 2)) * 2.0
    mirror = np.where(rng.random(batch_size) < 0.5, -1.0, 1.0) if augmentation.flip else 1.0
    theta = np.zeros((batch_size, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = mirror / zoom  # output (u, v) samples the input at (u / zoom + shift)
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, :, 2] = shifts
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x, y


# -- validation ------------------------------------------------------------------------------------
def evaluate(
    model: nn.Module, data: ClassifierData, indices: np.ndarray, device: torch.device
) -> dict[str, float | int]:
    """ROC AUC (scikit-learn), mean BCE and accuracy at 0.5 of ``model`` on the images at
    ``indices``, through the scoring path (``probabilities``)."""
    from sklearn.metrics import roc_auc_score

    scores = []
    for start in range(0, len(indices), EVAL_BATCH):
        batch = levels_to_model(data.images[indices[start : start + EVAL_BATCH]])[:, None]
        scores.append(probabilities(model, batch.to(device)).double().cpu())
    p = torch.cat(scores).numpy()
    y = data.labels[indices]
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    return {
        "auc": float(roc_auc_score(y, p)),
        "loss": float(loss),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "n": len(indices),
        **data.counts(indices),
    }


# -- the loop --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassifierResult:
    """What one ``train_classifier`` call did; ``model_uri``/``checkpoint_uri`` on rank 0."""

    losses: dict[str, float]  # the mean training loss of the last log window
    steps: int
    start_step: int
    seconds: float
    model_uri: str | None
    checkpoint_uri: str | None
    validation: dict[str, float | int] | None

    @property
    def validation_auc(self) -> float:
        """The last validation ROC AUC (NaN on ranks other than 0)."""
        return float(self.validation["auc"]) if self.validation else math.nan


def learning_rate(config: ClassifierConfig, step: int) -> float:
    """Cosine decay from ``lr`` at step 0 to 0 at ``steps``."""
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))


def _resolved_config(config: ClassifierConfig, device: torch.device) -> dict[str, Any]:
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {**config.to_dict(), "precision": precision}


@dataclass
class _State:
    """Where a run stands (all of it is saved in a checkpoint)."""

    step: int = 0
    seconds: float = 0.0
    window: list[float] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float | int] | None = None
    checkpoint_uri: str | None = None


def _resume(
    uri: str,
    config: ClassifierConfig,
    split_hash: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: np.random.Generator,
    rank: int,
    storage: Storage,
) -> tuple[_State, np.random.Generator]:
    checkpoint = load_checkpoint(uri, storage)
    if checkpoint.get("kind") != METHOD:
        raise ConfigError(
            f'"{uri}" is not a classifier checkpoint; train the classifier into another --out'
        )
    saved = checkpoint["config"]
    for key in ("width", "input_size", "batch_size", "val_fraction"):
        if saved.get(key) != config.to_dict()[key]:
            raise ConfigError(
                f'checkpoint "{uri}" was trained with {key}={saved.get(key)!r}, this run has '
                f"{key}={config.to_dict()[key]!r}; use the same settings, another --out, or "
                "resume=False to start over"
            )
    if checkpoint["split"] != split_hash:
        raise ConfigError(
            f'checkpoint "{uri}" was trained on other images (the archive or labels changed); '
            "use another --out, or resume=False to start over"
        )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    step = int(checkpoint["step"])
    if rank == 0:
        restore_random_state(checkpoint["random"], sampler)
    else:  # the checkpoint is rank 0's: this rank goes on with a fresh stream of its own
        sampler = np.random.default_rng([config.seed, rank, step])
    logger.info("resuming the classifier from %s at step %d", uri, step)
    state = _State(
        step,
        float(checkpoint["seconds"]),
        list(checkpoint["window"]),
        dict(checkpoint["losses"]),
        checkpoint["validation"],
        uri,
    )
    return state, sampler


def train_classifier(
    config: ClassifierConfig,
    data: ClassifierData,
    out_uri: str,
    *,
    storage: Storage | None = None,
    rank: int = 0,
    world_size: int = 1,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    report: Callable[[dict[str, float], int], None] | None = None,
    resume: bool = True,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> ClassifierResult:
    """Train the classifier on ``data``; checkpoints, logs and the model go under ``out_uri``.

    Adam with a cosine learning rate, BCE with logits. Python's, numpy's and torch's global RNGs
    are seeded with ``config.seed``; the batch sampler (images and augmentation) is a seeded
    stream of its own per rank; all are saved in every checkpoint so a resumed run continues
    exactly. Rank 0 validates (ROC AUC) every ``validate_every`` steps and at the end.

    Args:
        config: the training configuration.
        data: labelled images (``prepare_classifier_data`` or ``ClassifierData.load``).
        out_uri: output prefix (local folder or s3://): metrics.jsonl, tensorboard/,
            checkpoints/, classifier.json + weights.safetensors. Rank 0 writes it all.
        storage: how to reach ``out_uri``.
        rank, world_size: this process's place in a distributed run (DDP set up by the caller).
        wrap: applied to the network (Ray Train's ``prepare_model``).
        report: ``report(metrics, step)`` at every log or validation step, on every rank.
        resume: continue from the latest checkpoint under ``out_uri`` when there is one.
        progress: show a progress bar (rank 0).
        device: where to train (default: the current CUDA device, else the CPU).

    Raises:
        ConfigError: the data was prepared at another input size, a class has too few images
            to split, or the checkpoint to resume was trained with other settings or data.
    """
    store = storage or Storage()
    device = pick_device(device)
    if data.input_size != config.input_size:
        raise ConfigError(
            f"the classifier data was prepared at input_size {data.input_size}, the config asks "
            f"for {config.input_size}; prepare it again or set input_size: {data.input_size}"
        )
    split = data.split(config.val_fraction)
    train_ids = [data.image_ids[i] for i in split.train]
    val_ids = [data.image_ids[i] for i in split.validation]
    split_hash = ids_digest(train_ids) + ids_digest(val_ids)
    resolved = _resolved_config(config, device)
    autocast = resolved["precision"] == "bf16"
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    model_config = config.model_config()
    model = build_classifier(model_config).to(device)
    net = wrap(model) if wrap is not None else model  # DDP shares the parameters of `model`
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    sampler = np.random.default_rng([config.seed, rank])
    latest = latest_checkpoint(out_uri, store) if resume else None
    state = _State()
    if latest is not None:
        state, sampler = _resume(latest, config, split_hash, model, optimizer, sampler, rank, store)
    start_step, seconds_before = state.step, state.seconds

    from tqdm import tqdm

    show = progress and rank == 0
    bar = tqdm(total=config.steps, initial=start_step, desc="train classifier", disable=not show)
    if latest is not None and show:
        bar.write(f"resumed from {latest} at step {start_step}")
    log = MetricsLog(out_uri, store, start_step) if rank == 0 else None
    postfix: dict[str, str] = {}
    started = window_started = time.perf_counter()
    try:
        for step in range(start_step, config.steps):
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = sample_batch(data, split.train, sampler, config.batch_size, config.augmentation)
            net.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = net(x.to(device))
            loss = loss_fn(logits.float(), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state.window.append(float(loss.item()))
            state.step = step + 1
            bar.update()
            last = state.step == config.steps
            metrics: dict[str, float] = {}
            if state.step % config.log_every == 0 or last:
                now = time.perf_counter()
                state.losses = {"loss": float(np.mean(state.window))}
                metrics.update(
                    state.losses,
                    lr=lr,
                    seconds_per_step=(now - window_started) / len(state.window),
                )
                state.window, window_started = [], now
                postfix["loss"] = f"{state.losses['loss']:.4f}"
            validate = state.step % config.validate_every == 0 or last
            if validate and rank == 0:  # the bare model: no DDP collective on one rank only
                state.validation = evaluate(model, data, split.validation, device)
                metrics.update(
                    {f"val_{k}": float(state.validation[k]) for k in ("auc", "loss", "accuracy")}
                )
                postfix["val_auc"] = f"{state.validation['auc']:.3f}"
            if metrics:
                bar.set_postfix(postfix)
            if log is not None and metrics:
                log.write(state.step, metrics)
            if report is not None and (validate or "loss" in metrics):
                report(metrics, state.step)  # the same steps on every rank (a collective)
            if rank == 0 and (state.step % config.checkpoint_every == 0 or last):
                state.seconds = seconds_before + time.perf_counter() - started
                state.checkpoint_uri = checkpoint_uri(out_uri, state.step)
                save_checkpoint(
                    state.checkpoint_uri,
                    {
                        "format": CHECKPOINT_FORMAT,
                        "kind": METHOD,
                        "step": state.step,
                        "seconds": state.seconds,
                        "config": resolved,
                        "split": split_hash,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "random": random_state(sampler),
                        "window": state.window,
                        "losses": state.losses,
                        "validation": state.validation,
                        "code_version": __version__,
                    },
                    store,
                )
                if log is not None:
                    log.sync()
    finally:
        bar.close()
        if log is not None:
            log.close()
    seconds = seconds_before + time.perf_counter() - started
    if rank != 0:
        return ClassifierResult(state.losses, config.steps, start_step, seconds, None, None, None)
    card = {
        "archive_uri": data.archive_uri,
        "labels_uri": data.labels_uri,
        "n_images": {
            "train": data.counts(split.train),
            "validation": data.counts(split.validation),
        },
        "n_skipped": dict(data.skipped),
        "image_ids_sha256": {"train": ids_digest(train_ids), "validation": ids_digest(val_ids)},
        "config": resolved,
        "code_version": __version__,
        "train_seconds": round(seconds, 3),
        "world_size": world_size,
        "device": str(device),
        "final_losses": state.losses,
        "validation": state.validation,
        "checkpoint_uri": state.checkpoint_uri,
        "created_at": datetime.now(UTC).isoformat(),
    }
    model_uri = save_classifier(out_uri, model_config, model.state_dict(), card, store)
    return ClassifierResult(
        state.losses,
        config.steps,
        start_step,
        seconds,
        model_uri,
        state.checkpoint_uri,
        state.validation,
    )


# -- saving, loading, scoring ----------------------------------------------------------------------
def save_classifier(
    out_uri: str,
    model_config: dict[str, Any],
    weights: Mapping[str, torch.Tensor],
    card: dict[str, Any] | None = None,
    storage: Storage | None = None,
) -> str:
    """Write ``weights.safetensors`` then ``classifier.json`` (method, model config, the
    weights' SHA-256, the card) under ``out_uri``; returns the JSON's URI."""
    return write_model(
        out_uri,
        method=METHOD,
        state={"model_config": model_config},
        weights=weights,
        card=card,
        storage=storage,
        file_name=CLASSIFIER_FILE,
    )


class Classifier:
    """A trained classifier: display images in, P(finding) out.

    The network runs in eval mode (batch norm with its running statistics), so an image's score
    never depends on the other images of its batch.
    """

    batch_size = EVAL_BATCH

    def __init__(
        self,
        model: nn.Module,
        model_config: Mapping[str, Any],
        card: Mapping[str, Any] | None = None,
        model_hash: str = "",
        uri: str = "",
        device: torch.device | str | None = None,
    ) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.model_config = dict(model_config)
        self.input_size = int(model_config["input_size"])
        self.card = dict(card or {})
        self.model_hash = model_hash  # hash of classifier.json (holds the weights' SHA-256)
        self.uri = uri

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One display image [0, 1] of any size -> (1, S, S) float32 in [-1, 1], on the CPU."""
        return levels_to_model(classifier_levels(image, self.input_size))[None]

    def score_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """P(finding) of a preprocessed (N, 1, S, S) batch in model range: (N,) float32 on the
        classifier's device."""
        size = self.input_size
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (1, size, size):
            raise ModelError(
                f"expected a preprocessed batch of shape (N, 1, {size}, {size}), got "
                f"{tuple(batch.shape)}; use Classifier.preprocess"
            )
        return probabilities(self.model, batch.to(self.device))

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """P(finding) of display images [0, 1] (any sizes), in batches: float64 (N,) in [0, 1]."""
        out = [np.zeros(0)]
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            batch = torch.stack([self.preprocess(image) for image in chunk])
            out.append(self.score_tensor(batch).double().cpu().numpy())
        return np.concatenate(out)


def load_classifier(uri: str, storage: Storage | None = None) -> Classifier:
    """The classifier saved under ``uri`` (a folder or s3:// prefix holding classifier.json, or
    that file's URI). The weights must match their recorded SHA-256; nothing is unpickled.

    Raises:
        ModelError: nothing usable is there, another kind of model, or changed weights.
    """
    saved = read_model(uri, storage, file_name=CLASSIFIER_FILE, expected_method=METHOD)
    model = load_weights(build_classifier(saved.model_config), saved)
    return Classifier(model, saved.model_config, saved.card, saved.model_hash, saved.uri)
