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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harmonize.classifier.config import Augmentation
from harmonize.classifier.preprocess import classifier_levels, levels_to_model
from harmonize.errors import ConfigError
from harmonize.io.archive import list_images
from harmonize.io.labels import finding_labels, read_labels
from harmonize.io.storage import Storage
from harmonize.training.data import decode_objects, read_npz, write_npz

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
        """Write everything as one .npz object (no pickled objects), whole or not at all."""
        meta = {
            "input_size": self.input_size,
            "archive_uri": self.archive_uri,
            "labels_uri": self.labels_uri,
            "skipped": self.skipped,
        }
        arrays = {
            "images": self.images,
            "labels": self.labels,
            "image_ids": np.array(self.image_ids, dtype=str),
        }
        write_npz(uri, meta, arrays, storage or Storage())

    @classmethod
    def load(cls, uri: str, storage: Storage | None = None) -> ClassifierData:
        """Read what ``save`` wrote."""

        def parse(meta: dict[str, Any], npz: Mapping[str, np.ndarray]) -> ClassifierData:
            return cls(
                npz["images"],
                npz["labels"],
                [str(i) for i in npz["image_ids"]],
                int(meta["input_size"]),
                meta["archive_uri"],
                meta["labels_uri"],
                dict(meta["skipped"]),
            )

        return read_npz(uri, storage or Storage(), "classifier-data", parse)


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
    from harmonize.dicom.decode import decode_dicom

    def decode(blob: bytes) -> tuple[str, np.ndarray]:
        decoded = decode_dicom(blob)
        return decoded.meta.sop_instance_uid, classifier_levels(decoded.pixels, input_size)

    store = storage or Storage()
    label_of = finding_labels(read_labels(labels_uri, store))
    objects = list_images(archive_uri, store, limit=limit)
    results = decode_objects(
        [o.uri for o in objects], decode, store, desc="decode", progress=progress, workers=workers
    )
    images, labels, image_ids, errors = [], [], [], []
    seen: set[str] = set()
    skipped = {"unlabelled": 0, "unreadable": 0, "duplicate": 0}
    for decoded, error in results:
        if decoded is None:
            skipped["unreadable"] += 1
            errors.append(error)
        elif decoded[0] not in label_of:
            skipped["unlabelled"] += 1
        elif decoded[0] in seen:
            skipped["duplicate"] += 1
        else:
            seen.add(decoded[0])
            image_ids.append(decoded[0])
            images.append(decoded[1])
            labels.append(label_of[decoded[0]])
    if errors:
        logger.warning("skipped %d unreadable objects, e.g. %s", len(errors), errors[0])
    if not images:
        raise ConfigError(
            f'none of the {len(results)} objects under "{archive_uri}" has a label in '
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
