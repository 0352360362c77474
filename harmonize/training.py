"""The GAN training loop without Ray: config, in-memory training data, checkpoints, the loop.

``train`` runs any recipe of ``METHODS`` (CycleGAN today, UNIT next) through one small protocol
(``GanRecipe``): ``train_step``, ``state_dict`` / ``load_state_dict``, ``generator_state``,
``model_config``. It samples unpaired crops from ``TrainingData`` (both sites' images decoded once
and kept in memory as 16-bit levels), logs the losses (``OUT/metrics.jsonl``, TensorBoard under
``OUT/tensorboard/``, a tqdm bar, an optional ``report`` callback for Ray Train), writes whole
checkpoints (``OUT/checkpoints/step-0002000.pt``) that resume bit-exactly, and at the end saves the
source->target generator with a model card through ``models.files.write_model``.

Distributed training (``harmonize.distributed.train``) calls ``train`` once per worker with its
``rank``, ``world_size`` and ``wrap=prepare_model``; only rank 0 writes files.

Example::

    config = load_train_config("train.yaml", steps=2000)
    data = prepare_training_data("s3://pacs/montgomery", "s3://pacs/shenzhen", config.load_size)
    result = train(config, data, "s3://models/cyclegan-mc-to-sz")
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from harmonize import __version__
from harmonize.device import pick_device
from harmonize.errors import ConfigError, HarmonizeError, StorageError
from harmonize.imaging.preprocess import (
    from_model_range,
    from_uint16,
    pad_to_multiple,
    random_crop,
    to_model_range,
    training_image,
    unpad,
)
from harmonize.io.archive import list_images
from harmonize.io.storage import Storage, is_s3, join
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram, wasserstein_1d
from harmonize.metrics.ssim import SSIM_OPTIONS, ssim
from harmonize.models.registry import NEURAL, gan_parts, method_names

logger = logging.getLogger(__name__)

CHECKPOINT_FOLDER = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_FOLDER = "tensorboard"
CHECKPOINT_FORMAT = 1
_CHECKPOINT_NAME = re.compile(r"step-(\d+)\.pt$")


# -- the recipe protocol and the methods that implement it -----------------------------------------
class GanRecipe(Protocol):
    """What the loop needs from a GAN method (``CycleGANRecipe``; UNIT implements the same)."""

    step: int

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
    def generator_state(self) -> dict[str, torch.Tensor]: ...
    def model_config(self) -> dict[str, Any]: ...
    @property
    def learning_rate(self) -> float: ...


# -- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """How to train a GAN harmonizer. Every field can be set in YAML (``load_train_config``).

    Args:
        method: a key of ``METHODS`` (``cyclegan``, ``unit``).
        steps: optimisation steps (one batch per rank each). 20 000 steps at batch 1 is ~30
            passes over a 662-image site (Shenzhen); the published 200-epoch recipe is ~130 000.
        decay_start: step where the LR starts decaying linearly to 0 at ``steps``
            (None: ``steps // 2``, the published half-constant, half-decay schedule). CycleGAN
            only: UNIT halves the LR every ``model.lr_step_size`` steps, as published.
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
        compile: ``torch.compile`` the networks (slow first steps; for long GPU runs).
        model: the method's model settings (e.g. ``{"ngf": 8, "n_blocks": 2}``); see
            ``CycleGANConfig``, ``UNITConfig``.
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
    compile: bool = False
    model: Mapping[str, Any] = field(default_factory=dict)
    validation_images: int = 8

    def __post_init__(self) -> None:
        if self.method not in method_names(NEURAL):
            raise ConfigError(
                f'cannot train method "{self.method}"; trainable methods: {method_names(NEURAL)}'
            )
        positive = ("steps", "batch_size", "crop_size", "load_size", "log_every")
        for name in (*positive, "checkpoint_every", "seed", "validation_images"):
            value = getattr(self, name)
            minimum = 1 if name in positive or name == "checkpoint_every" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"training {name} must be an integer >= {minimum}, got {value!r}")
        if self.decay_start is not None and (
            isinstance(self.decay_start, bool)
            or not isinstance(self.decay_start, int)
            or not 0 <= self.decay_start <= self.steps
        ):
            raise ConfigError(
                f"decay_start must be an integer in 0..steps ({self.steps}), got "
                f"{self.decay_start!r}"
            )
        if self.crop_size % 4:
            raise ConfigError(
                f"crop_size must be a multiple of 4 (the generator halves it twice), got "
                f"{self.crop_size}"
            )
        if self.crop_size > self.load_size:
            raise ConfigError(
                f"crop_size {self.crop_size} is larger than load_size {self.load_size}; crops are "
                "cut from images whose short side is load_size"
            )
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f'precision must be auto, bf16 or fp32, got "{self.precision}"')
        if self.channels_last not in ("auto", True, False):
            raise ConfigError(
                f"channels_last must be auto, true or false, got {self.channels_last!r}"
            )
        for name in ("flip", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.model, Mapping):
            raise ConfigError(f"model must be a mapping of model settings, got {self.model!r}")
        gan_parts(self.method).parse_config(self.model)  # raises ConfigError naming bad settings

    @property
    def decay_start_step(self) -> int:
        return self.steps // 2 if self.decay_start is None else self.decay_start

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"] = dict(self.model)
        return out


def load_train_config(
    path: str | Path | None = None, storage: Storage | None = None, **overrides: Any
) -> TrainConfig:
    """A validated ``TrainConfig`` from a YAML file (local or s3://) and keyword overrides.

    Overrides whose value is None are ignored (unset command-line options); ``model`` overrides
    are merged into the YAML's ``model`` section.

    Raises:
        ConfigError: unreadable YAML, unknown keys (named), or invalid values.
    """
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load((storage or Storage()).read_text(str(path)))
        except (HarmonizeError, yaml.YAMLError) as err:
            raise ConfigError(f'cannot read the training config "{path}": {err}') from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f'"{path}" must hold a mapping of training settings, got {loaded!r}')
        values = dict(loaded or {})
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "model" and isinstance(value, Mapping):
            values["model"] = {**dict(values.get("model") or {}), **value}
        else:
            values[key] = value
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        source = f' in "{path}"' if path is not None else ""
        raise ConfigError(f"unknown training settings {unknown}{source}; known: {sorted(known)}")
    if values.get("model") is None:
        values.pop("model", None)
    return TrainConfig(**values)


# -- training data ---------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Both sites' images, decoded and resized once (short side ``load_size``), as uint16 levels.

    ``source`` is domain A (the site to harmonize), ``target`` domain B. Images keep their own
    aspect ratio, so they are lists of (H, W) arrays of different sizes.
    """

    source: list[np.ndarray]
    target: list[np.ndarray]
    load_size: int
    source_uri: str = ""
    target_uri: str = ""
    unreadable: dict[str, int] = field(default_factory=lambda: {"source": 0, "target": 0})

    def __post_init__(self) -> None:
        for name, images in (("source", self.source), ("target", self.target)):
            if not images:
                raise ConfigError(f"training data has no {name} images")
            for image in images:
                if image.ndim != 2 or image.dtype != np.uint16:
                    raise ConfigError(
                        f"training images must be 2-D uint16 arrays, got {image.dtype} "
                        f"{image.shape} in {name}; build them with preprocess.training_image"
                    )

    def sample(
        self, rng: np.random.Generator, batch_size: int, crop_size: int, flip: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An unpaired batch: ``batch_size`` random crops of random source images and, drawn
        independently, of random target images; float32 (B, 1, crop, crop) in [-1, 1]."""
        batches = []
        for images in (self.source, self.target):
            crops = []
            for _ in range(batch_size):
                crop = random_crop(images[int(rng.integers(len(images)))], crop_size, rng)
                if flip and rng.random() < 0.5:
                    crop = crop[:, ::-1]
                crops.append(crop)
            levels = np.stack(crops)[:, None]
            batches.append(torch.from_numpy(to_model_range(from_uint16(levels))))
        return batches[0], batches[1]

    def save(self, uri: str, storage: Storage | None = None) -> None:
        """Write everything as one .npz object (no pickled objects), whole or not at all."""
        meta = {
            "load_size": self.load_size,
            "source_uri": self.source_uri,
            "target_uri": self.target_uri,
            "unreadable": self.unreadable,
        }
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
        for name, images in (("source", self.source), ("target", self.target)):
            arrays[f"{name}_shapes"] = np.array([im.shape for im in images], dtype=np.int64)
            arrays[f"{name}_levels"] = np.concatenate([im.ravel() for im in images])
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        (storage or Storage()).write(uri, buffer.getvalue())

    @classmethod
    def load(cls, uri: str, storage: Storage | None = None) -> TrainingData:
        """Read what ``save`` wrote."""
        data = (storage or Storage()).read(uri)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                sites = {}
                for name in ("source", "target"):
                    shapes, levels = npz[f"{name}_shapes"], npz[f"{name}_levels"]
                    ends = np.cumsum([int(h) * int(w) for h, w in shapes])
                    chunks = np.split(levels, ends[:-1])
                    sites[name] = [
                        c.reshape(h, w) for c, (h, w) in zip(chunks, shapes, strict=True)
                    ]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f'"{uri}" is not a harmonize training-data file: {err}') from err
        return cls(
            sites["source"],
            sites["target"],
            int(meta["load_size"]),
            meta["source_uri"],
            meta["target_uri"],
            dict(meta["unreadable"]),
        )


def _decode_for_training(task: tuple[str, int, Storage]) -> tuple[np.ndarray | None, str]:
    from harmonize.dicom.decode import decode_dicom

    uri, load_size, storage = task
    try:
        return training_image(decode_dicom(storage.read(uri)).pixels, load_size), ""
    except HarmonizeError as err:
        return None, f"{uri}: {err}"


def prepare_training_data(
    source_uri: str,
    target_uri: str,
    load_size: int,
    storage: Storage | None = None,
    limit: int | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> TrainingData:
    """Decode both archives (objects ending .dcm/.dicom, sorted; the first ``limit`` per site)
    and resize every image to short side ``load_size``, in a pool of threads.

    Unreadable objects are skipped and counted (``unreadable``). Raises ConfigError when a site
    has no readable image.
    """
    from tqdm import tqdm

    store = storage or Storage()
    sites: dict[str, list[np.ndarray]] = {}
    unreadable: dict[str, int] = {}
    for name, uri in (("source", source_uri), ("target", target_uri)):
        objects = list_images(uri, store, what=f"{name} images", limit=limit)
        tasks = [(o.uri, load_size, store) for o in objects]
        images, errors = [], []
        n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
        with ThreadPoolExecutor(n_workers) as pool:
            results = pool.map(_decode_for_training, tasks)
            for image, error in tqdm(
                results, total=len(tasks), desc=f"decode {name}", disable=not progress, leave=False
            ):
                if image is None:
                    errors.append(error)
                else:
                    images.append(image)
        if not images:
            raise ConfigError(
                f'none of the {len(tasks)} {name} objects under "{uri}" could be read: {errors[:3]}'
            )
        if errors:
            logger.warning(
                "skipped %d unreadable %s objects, e.g. %s", len(errors), name, errors[0]
            )
        sites[name], unreadable[name] = images, len(errors)
    return TrainingData(
        sites["source"], sites["target"], load_size, source_uri, target_uri, unreadable
    )


# -- checkpoints and random state ------------------------------------------------------------------
def checkpoint_uri(out_uri: str, step: int) -> str:
    return join(out_uri, CHECKPOINT_FOLDER, f"step-{step:07d}.pt")


def latest_checkpoint(out_uri: str, storage: Storage | None = None) -> str | None:
    """The URI of the checkpoint with the highest step under ``out_uri/checkpoints``, if any."""
    store = storage or Storage()
    folder = join(out_uri, CHECKPOINT_FOLDER)
    if not is_s3(folder) and not os.path.isdir(store.normalize(folder)):
        return None
    found = [
        (int(match.group(1)), obj.uri)
        for obj in store.list(folder, suffixes=(".pt",))
        if (match := _CHECKPOINT_NAME.search(obj.uri))
    ]
    return max(found)[1] if found else None


def save_checkpoint(uri: str, state: dict[str, Any], storage: Storage) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    storage.write(uri, buffer.getvalue())


def load_checkpoint(uri: str, storage: Storage) -> dict[str, Any]:
    """A checkpoint read with ``weights_only=True`` (no code is unpickled), tensors on the CPU."""
    try:
        state = torch.load(io.BytesIO(storage.read(uri)), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError) as err:  # torch's pickle errors
        raise StorageError(f'"{uri}" is not a readable checkpoint: {err}') from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise StorageError(f'"{uri}" is not a harmonize training checkpoint')
    return state


def random_state(sampler: np.random.Generator) -> dict[str, Any]:
    """Every random stream a step may touch, as tensors and plain values."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {
        "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
        "pos": int(numpy_state["state"]["pos"]),
    }
    return {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "sampler": sampler.bit_generator.state,
    }


def restore_random_state(state: Mapping[str, Any], sampler: np.random.Generator) -> None:
    random.setstate(state["python"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        "key": state["numpy"]["state"]["key"].numpy().astype(np.uint32),
        "pos": state["numpy"]["state"]["pos"],
    }
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    sampler.bit_generator.state = state["sampler"]


# -- metrics ---------------------------------------------------------------------------------------
class MetricsLog:
    """Rank 0's logs: ``metrics.jsonl`` (rewritten whole at each log) and TensorBoard scalars
    (written locally; copied to ``out_uri/tensorboard/`` by ``sync`` when out_uri is s3://).

    On resume, lines after ``start_step`` (logged after the checkpoint) are dropped, and so are
    TensorBoard events (``purge_step``), so the logs read as one uninterrupted run.
    """

    def __init__(self, out_uri: str, storage: Storage, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.storage = storage
        self.uri = join(out_uri, METRICS_FILE)
        self.lines: list[str] = []
        if start_step > 0 and storage.exists(self.uri):
            for line in storage.read_text(self.uri).splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= start_step:
                    self.lines.append(line)
        self.remote = join(out_uri, TENSORBOARD_FOLDER) if is_s3(out_uri) else None
        self.local = (
            tempfile.mkdtemp(prefix="harmonize-tb-")
            if self.remote
            else storage.normalize(join(out_uri, TENSORBOARD_FOLDER))
        )
        self.writer = SummaryWriter(self.local, purge_step=start_step or None)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        self.lines.append(json.dumps({"step": step, **metrics}))
        self.storage.write_text(self.uri, "\n".join(self.lines) + "\n")
        for name, value in metrics.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def sync(self) -> None:
        self.writer.flush()
        if self.remote:
            root = Path(self.local)
            for path in root.rglob("*"):
                if path.is_file():
                    remote = join(self.remote, path.relative_to(root).as_posix())
                    self.storage.write(remote, path.read_bytes())

    def close(self) -> None:
        self.sync()
        self.writer.close()


def _window_means(window: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.mean([w[name] for w in window])) for name in window[0]}


# -- validation ------------------------------------------------------------------------------------
def site_histogram(images: list[np.ndarray]) -> np.ndarray:
    """The mean HIST_BINS-bin intensity histogram of uint16 training images."""
    return np.mean([intensity_histogram(from_uint16(im), bins=HIST_BINS) for im in images], axis=0)


@torch.inference_mode()
def harmonize_display_image(
    generator: nn.Module, image: np.ndarray, device: torch.device
) -> np.ndarray:
    """A display image [0, 1] through a generator (padded to a multiple of 4); [0, 1], float32."""
    x = to_model_range(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)))
    padded, padding = pad_to_multiple(x[None, None].to(device), 4)
    out = from_model_range(unpad(generator(padded).float(), padding)).clamp(0.0, 1.0)
    return out[0, 0].cpu().numpy()


def validate_generator(
    generator: nn.Module,
    source_images: list[np.ndarray],
    target_histogram: np.ndarray,
    device: torch.device,
) -> dict[str, float | int]:
    """SSIM(original, harmonized) (Gaussian mode, data_range 1) and the W1 distance of each
    image's histogram to the target site's mean histogram, before and after; means and stds."""
    scores, before, after = [], [], []
    generator = generator.to(device).eval()
    for levels in source_images:
        original = from_uint16(levels)
        harmonized = harmonize_display_image(generator, original, device)
        scores.append(float(ssim(original, harmonized, **SSIM_OPTIONS)))
        before.append(
            wasserstein_1d(intensity_histogram(original, bins=HIST_BINS), target_histogram)
        )
        after.append(
            wasserstein_1d(intensity_histogram(harmonized, bins=HIST_BINS), target_histogram)
        )
    return {
        "n_images": len(scores),
        "ssim_mean": float(np.mean(scores)),
        "ssim_std": float(np.std(scores)),
        "w1_to_target_before": float(np.mean(before)),
        "w1_to_target_before_std": float(np.std(before)),
        "w1_to_target_after": float(np.mean(after)),
        "w1_to_target_after_std": float(np.std(after)),
    }


# -- the loop --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainResult:
    """What one ``train`` call did. ``model_uri`` and ``checkpoint_uri`` are set on rank 0."""

    losses: dict[str, float]  # the mean of the last log window
    steps: int
    start_step: int
    seconds: float
    model_uri: str | None
    checkpoint_uri: str | None
    validation: dict[str, float | int] | None


def resolved_config(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The config as plain values with its automatic choices made for ``device``."""
    cuda = device.type == "cuda"
    return {
        **config.to_dict(),
        "decay_start": config.decay_start_step,
        "precision": ("bf16" if cuda else "fp32")
        if config.precision == "auto"
        else config.precision,
        "channels_last": cuda if config.channels_last == "auto" else bool(config.channels_last),
    }


@dataclass
class _Progress:
    """Where a run stands: the next step, seconds trained so far, the open log window."""

    step: int = 0
    seconds: float = 0.0
    window: list[dict[str, float]] = field(default_factory=list)
    checkpoint_uri: str | None = None


def _resume(
    uri: str,
    config: TrainConfig,
    recipe: GanRecipe,
    sampler: np.random.Generator,
    rank: int,
    storage: Storage,
) -> tuple[_Progress, np.random.Generator]:
    """Load the checkpoint at ``uri`` into the recipe and the random streams."""
    checkpoint = load_checkpoint(uri, storage)
    saved = checkpoint["config"]
    for key in ("method", "model", "batch_size", "crop_size"):
        if saved.get(key) != config.to_dict()[key]:
            raise ConfigError(
                f'checkpoint "{uri}" was trained with {key}={saved.get(key)!r}, this run has '
                f"{key}={config.to_dict()[key]!r}; use the same settings, another --out, or "
                "resume=False to start over"
            )
    recipe.load_state_dict(checkpoint["recipe"])
    step = int(checkpoint["step"])
    if rank == 0:
        restore_random_state(checkpoint["random"], sampler)
    else:  # the checkpoint is rank 0's: this rank goes on with a fresh stream of its own
        sampler = np.random.default_rng([config.seed, rank, step])
    logger.info("resuming %s from %s at step %d", config.method, uri, step)
    progress = _Progress(step, float(checkpoint["seconds"]), list(checkpoint["window"]), uri)
    return progress, sampler


def train(
    config: TrainConfig,
    data: TrainingData,
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
) -> TrainResult:
    """Train ``config.method`` on ``data``; checkpoints, logs and the model go under ``out_uri``.

    Python's, numpy's and torch's global RNGs are seeded with ``config.seed``; the recipe and
    the data sampler use their own seeded streams, all saved in every checkpoint.

    Args:
        config: the training configuration.
        data: both sites' images (``prepare_training_data`` or ``TrainingData.load``).
        out_uri: output prefix (local folder or s3://): metrics.jsonl, tensorboard/,
            checkpoints/, and the model (harmonizer.json + weights). Rank 0 writes it all.
        storage: how to reach ``out_uri``.
        rank, world_size: this process's place in a distributed run (DDP set up by the caller).
        wrap: applied to the recipe's network pairs (Ray Train's ``prepare_model``).
        report: ``report(metrics, step)`` every ``log_every`` steps and at the end, every rank.
        resume: continue from the latest checkpoint under ``out_uri`` when there is one. False
            starts from step 0 but leaves older checkpoints in place: delete them (or use a new
            ``out_uri``) so that a later resume cannot pick up a checkpoint of the old run.
        progress: show a progress bar (rank 0).
        device: where to train (default: the current CUDA device, else the CPU).

    Raises:
        ConfigError: the data was prepared at another load size, or the checkpoint to resume
            was trained with other model settings.
    """
    store = storage or Storage()
    device = pick_device(device)
    if data.load_size != config.load_size:
        raise ConfigError(
            f"the training data was prepared at load_size {data.load_size}, the config asks for "
            f"{config.load_size}; prepare it again or set load_size: {data.load_size}"
        )
    resolved = resolved_config(config, device)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    recipe = gan_parts(config.method).recipe(
        config.model,
        steps=config.steps,
        decay_start=config.decay_start_step,
        device=device,
        seed=config.seed,
        rank=rank,
        wrap=wrap,
        precision=resolved["precision"],
        channels_last=resolved["channels_last"],
        compile=config.compile,
    )
    sampler = np.random.default_rng([config.seed, rank])
    latest = latest_checkpoint(out_uri, store) if resume else None
    state = _Progress()
    if latest is not None:
        state, sampler = _resume(latest, config, recipe, sampler, rank, store)
    start_step, seconds_before = state.step, state.seconds

    from tqdm import tqdm

    show = progress and rank == 0
    bar = tqdm(
        total=config.steps, initial=start_step, desc=f"train {config.method}", disable=not show
    )
    if latest is not None and show:
        bar.write(f"resumed from {latest} at step {start_step}")
    log = MetricsLog(out_uri, store, start_step) if rank == 0 else None
    losses: dict[str, float] = {}
    started = window_started = time.perf_counter()
    try:
        for step in range(start_step, config.steps):
            real_a, real_b = data.sample(sampler, config.batch_size, config.crop_size, config.flip)
            state.window.append(recipe.train_step(real_a, real_b))
            state.step = step + 1
            bar.update()
            if state.step % config.log_every == 0 or state.step == config.steps:
                losses = _window_means(state.window)
                now = time.perf_counter()
                metrics = {
                    **losses,
                    "lr": recipe.learning_rate,
                    "seconds_per_step": (now - window_started) / len(state.window),
                }
                state.window, window_started = [], now
                bar.set_postfix(g=f"{losses['g_total']:.3f}", d_b=f"{losses['d_b']:.3f}")
                if log is not None:
                    log.write(state.step, metrics)
                if report is not None:
                    report(metrics, state.step)
            checkpoint_due = state.step % config.checkpoint_every == 0
            if rank == 0 and (checkpoint_due or state.step == config.steps):
                state.seconds = seconds_before + time.perf_counter() - started
                state.checkpoint_uri = checkpoint_uri(out_uri, state.step)
                save_checkpoint(
                    state.checkpoint_uri,
                    {
                        "format": CHECKPOINT_FORMAT,
                        "step": state.step,
                        "seconds": state.seconds,
                        "config": resolved,
                        "recipe": recipe.state_dict(),
                        "random": random_state(sampler),
                        "window": state.window,
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
    if not losses and latest is not None:  # resumed at the end: nothing was left to train
        losses = _last_logged_losses(out_uri, store)
    if rank != 0:
        return TrainResult(losses, config.steps, start_step, seconds, None, None, None)

    model_config = {**recipe.model_config(), "load_size": config.load_size}
    validation, target_histogram = _validate(config, data, model_config, recipe, device)
    card = {
        "method": config.method,
        "source_uri": data.source_uri,
        "target_uri": data.target_uri,
        "n_images": {"source": len(data.source), "target": len(data.target)},
        "n_unreadable": dict(data.unreadable),
        "config": resolved,
        "code_version": __version__,
        "train_seconds": round(seconds, 3),
        "world_size": world_size,
        "device": str(device),
        "final_losses": losses,
        "validation": validation,
        "target_histogram": [float(v) for v in target_histogram],
        "checkpoint_uri": state.checkpoint_uri,
        "created_at": datetime.now(UTC).isoformat(),
    }
    model_uri = _save_model(out_uri, config.method, model_config, recipe, card, store)
    return TrainResult(
        losses, config.steps, start_step, seconds, model_uri, state.checkpoint_uri, validation
    )


def _last_logged_losses(out_uri: str, storage: Storage) -> dict[str, float]:
    uri = join(out_uri, METRICS_FILE)
    if not storage.exists(uri):
        return {}
    lines = [line for line in storage.read_text(uri).splitlines() if line.strip()]
    last = json.loads(lines[-1]) if lines else {}
    return {k: float(v) for k, v in last.items() if k not in ("step", "lr", "seconds_per_step")}


def _validate(
    config: TrainConfig,
    data: TrainingData,
    model_config: dict[str, Any],
    recipe: GanRecipe,
    device: torch.device,
) -> tuple[dict[str, float | int], np.ndarray]:
    """The validation pass of the model card, through the inference path (build + load)."""
    generator = gan_parts(config.method).build_generator(model_config)
    generator.load_state_dict(recipe.generator_state())
    target_histogram = site_histogram(data.target)
    images = data.source[: config.validation_images]
    if not images:
        return {"n_images": 0}, target_histogram
    return validate_generator(generator, images, target_histogram, device), target_histogram


def _save_model(
    out_uri: str,
    method: str,
    model_config: dict[str, Any],
    recipe: GanRecipe,
    card: dict[str, Any],
    storage: Storage,
) -> str:
    from harmonize.models.files import write_model

    return write_model(
        out_uri,
        method=method,
        state={"model_config": model_config},
        weights=recipe.generator_state(),
        card=card,
        storage=storage,
    )
