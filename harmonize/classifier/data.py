"""The classifier's training data: labelled target-site images joined by SOPInstanceUID, decoded
and preprocessed once (``ClassifierData``), the stable hash split, and augmented batches.

Example::

    data = prepare_classifier_data("s3://pacs/shenzhen", "s3://pacs/labels.parquet", 256)
    split = data.split(0.2)
    x, y = sample_batch(data, split.train, np.random.default_rng(0), 32, Augmentation())
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from harmonize.classifier.config import Augmentation
from harmonize.classifier.preprocess import classifier_levels, levels_to_model
from harmonize.errors import ConfigError
from harmonize.io.archive import list_images
from harmonize.io.labels import finding_labels, read_labels
from harmonize.io.storage import Storage
from harmonize.training.data import SHARD_SIZE, decode_objects, read_index, write_index
from harmonize.training.sharded_images import ImageRows, ShardedImages
from harmonize.training.shards import ShardRunner, plan_shards, prepare_shards

logger = logging.getLogger(__name__)

CLASS_NAMES = {0: "no_finding", 1: "finding"}


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

    ``images`` is (N, S, S) uint16 (an array in memory, or ``ImageRows`` of shards that read
    only what a batch draws: ``prepare_classifier_shards``), ``labels`` (N,) int64 in {0, 1}
    (1 = finding),
    ``image_ids`` the SOPInstanceUIDs. ``skipped`` counts the objects left out: ``unlabelled``
    (no label row, or a null label), ``unreadable`` and ``duplicate`` (a SOPInstanceUID seen
    before, in URI order).
    """

    images: np.ndarray | ImageRows
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
                "them with classifier.preprocess.classifier_levels"
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
        """Write the index of sharded data (its shards, which images of them it holds, their
        labels and what it skipped) as one JSON object, whole: the images stay in their
        shards."""
        if not isinstance(self.images, ImageRows):
            raise ConfigError(
                "only sharded classifier data is saved (its images stay in their shards); "
                "prepare it with prepare_classifier_shards"
            )
        index = {
            "input_size": self.input_size,
            "archive_uri": self.archive_uri,
            "labels_uri": self.labels_uri,
            "skipped": self.skipped,
            "shards": self.images.images.shard_uris,
            "positions": self.images.positions.tolist(),
            "labels": self.labels.tolist(),
            "image_ids": self.image_ids,
        }
        write_index(uri, index, storage or Storage())

    @classmethod
    def load(cls, uri: str, storage: Storage | None = None) -> ClassifierData:
        """The sharded data whose index ``save`` wrote (reads the shards' footers only)."""
        store = storage or Storage()
        keys = ("input_size", "archive_uri", "labels_uri", "skipped", "shards", "positions")
        index = read_index(uri, store, "classifier-data", (*keys, "labels", "image_ids"))
        size = int(index["input_size"])
        return cls(
            ImageRows(ShardedImages(index["shards"], store), index["positions"], size),
            np.asarray(index["labels"], dtype=np.int64),
            [str(i) for i in index["image_ids"]],
            size,
            index["archive_uri"],
            index["labels_uri"],
            dict(index["skipped"]),
        )


def dicom_classifier_image(data: bytes, input_size: int) -> tuple[str, np.ndarray]:
    """A shard ``Decode`` (bind ``input_size`` with ``functools.partial``): the object's
    SOPInstanceUID and its image as the classifier keeps it (``classifier_levels``)."""
    from harmonize.dicom.decode import decode_dicom

    decoded = decode_dicom(data)
    return decoded.meta.sop_instance_uid, classifier_levels(decoded.pixels, input_size)


def _join_labels(
    keys: Sequence[str | None], label_of: Mapping[str, int], errors: Sequence[str]
) -> tuple[list[int], list[int], list[str], dict[str, int]]:
    """(positions kept, their labels, their image ids, what was skipped) of decoded images with
    SOPInstanceUIDs ``keys`` (None: unreadable), in order: unlabelled ones and repeats of an
    id seen before are skipped and counted, as are the ``errors`` (unreadable objects)."""
    positions, labels, image_ids = [], [], []
    seen: set[str] = set()
    skipped = {"unlabelled": 0, "unreadable": len(errors), "duplicate": 0}
    for position, key in enumerate(keys):
        if key is None:
            continue
        if key not in label_of:
            skipped["unlabelled"] += 1
        elif key in seen:
            skipped["duplicate"] += 1
        else:
            seen.add(key)
            positions.append(position)
            image_ids.append(key)
            labels.append(label_of[key])
    if errors:
        logger.warning("skipped %d unreadable objects, e.g. %s", len(errors), errors[0])
    return positions, labels, image_ids, skipped


def _check_labelled(
    labels: Sequence[int], n_objects: int, skipped: Mapping[str, int], archive: str, table: str
) -> None:
    """ConfigError when no image has a label, or all have the same one."""
    if not labels:
        raise ConfigError(
            f'none of the {n_objects} objects under "{archive}" has a label in '
            f'"{table}" (joined on SOPInstanceUID = image_id; {skipped["unreadable"]} '
            "unreadable): check that the labels table describes this archive"
        )
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(
            f'all {len(labels)} labelled images under "{archive}" have label {classes[0]} '
            f"({CLASS_NAMES[classes[0]]}); the classifier needs images with and without findings"
        )


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
    store = storage or Storage()
    label_of = finding_labels(read_labels(labels_uri, store))
    objects = list_images(archive_uri, store, limit=limit)
    results = decode_objects(
        [o.uri for o in objects],
        partial(dicom_classifier_image, input_size=input_size),
        store,
        desc="decode",
        progress=progress,
        workers=workers,
    )
    keys = [None if decoded is None else decoded[0] for decoded, _ in results]
    errors = [error for decoded, error in results if decoded is None]
    positions, labels, image_ids, skipped = _join_labels(keys, label_of, errors)
    _check_labelled(labels, len(results), skipped, archive_uri, labels_uri)
    pixels = {i: decoded[1] for i, (decoded, _) in enumerate(results) if decoded is not None}
    images = np.stack([pixels[p] for p in positions])
    return ClassifierData(
        images, np.array(labels), image_ids, input_size, archive_uri, labels_uri, skipped
    )


def prepare_classifier_shards(
    archive_uri: str,
    labels_uri: str,
    input_size: int,
    *,
    cache_uri: str,
    storage: Storage | None = None,
    runner: ShardRunner | None = None,
    progress: bool = True,
    shard_size: int = SHARD_SIZE,
) -> ClassifierData:
    """``prepare_classifier_data`` into content-keyed shards under ``cache_uri``
    (``harmonize.training.shards``; shards already there reused, the others built by
    ``runner``: Ray tasks from the distributed driver, threads here by default): the same
    images, labels, ids and counts, but each image read only when a batch draws it.
    """
    store = storage or Storage()
    label_of = finding_labels(read_labels(labels_uri, store))
    objects = [(o.uri, o.etag) for o in list_images(archive_uri, store)]
    settings = {"kind": "classifier-data", "input_size": input_size}
    specs = plan_shards(objects, "images", settings, cache_uri, shard_size)
    decode = partial(dicom_classifier_image, input_size=input_size)
    summaries = prepare_shards(specs, decode, store, settings, runner=runner, progress=progress)
    sharded = ShardedImages([s.uri for s in summaries if s.n_images], store)
    errors = [f"{uri}: {why}" for s in summaries for uri, why in s.errors]  # empty shards too
    positions, labels, image_ids, skipped = _join_labels(sharded.keys, label_of, errors)
    _check_labelled(labels, len(objects), skipped, archive_uri, labels_uri)
    return ClassifierData(
        ImageRows(sharded, positions, input_size),
        np.array(labels),
        image_ids,
        input_size,
        archive_uri,
        labels_uri,
        skipped,
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
