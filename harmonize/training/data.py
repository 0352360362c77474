"""Training data: both sites' images for a GAN (``TrainingData``), and what every kind of
training data shares (decoding an archive in threads, the JSON index of its shards).

Images are decoded and resized once and kept as 16-bit levels: in memory
(``prepare_training_data``), or in content-keyed shards under ``OUT/cache/`` that the
distributed driver has built on the cluster's CPUs and every worker reads one drawn image at a
time (``prepare_training_shards``; ``TrainingData.save`` / ``load`` write and read their index).

Example::

    data = prepare_training_data("s3://pacs/montgomery", "s3://pacs/shenzhen", load_size=286)
    real_a, real_b = data.sample(np.random.default_rng(0), batch_size=1, crop_size=256)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np
import torch

from harmonize.errors import ConfigError, HarmonizeError
from harmonize.imaging.preprocess import (
    crop_offsets,
    from_uint16,
    to_model_range,
    training_image,
)
from harmonize.io.archive import list_images
from harmonize.io.storage import Storage
from harmonize.training.sharded_images import ShardedImages
from harmonize.training.shards import ShardRunner, plan_shards, prepare_shards

logger = logging.getLogger(__name__)

T = TypeVar("T")
SITES = ("source", "target")
SHARD_SIZE = 256  # images per training shard (~20 MB at load size 286)
INDEX_FORMAT = 1


# -- what every kind of training data shares -------------------------------------------------------
def decode_objects(
    uris: Sequence[str],
    decode: Callable[[bytes], T],
    storage: Storage,
    *,
    desc: str,
    progress: bool = True,
    workers: int | None = None,
) -> list[tuple[T | None, str]]:
    """``decode`` of every object's bytes, read and decoded in a pool of threads, in the order
    of ``uris``: ``(value, "")``, or ``(None, "URI: why")`` where reading or decoding raised a
    HarmonizeError (an unreadable object is skipped, never a failed run)."""
    from tqdm import tqdm

    def one(uri: str) -> tuple[T | None, str]:
        try:
            return decode(storage.read(uri)), ""
        except HarmonizeError as err:
            return None, f"{uri}: {err}"

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(uris)))
    with ThreadPoolExecutor(n_workers) as pool:
        results = pool.map(one, uris)
        return list(tqdm(results, total=len(uris), desc=desc, disable=not progress, leave=False))


def write_index(uri: str, index: Mapping[str, Any], storage: Storage) -> None:
    """The JSON index of sharded training data (``INDEX_FORMAT`` added), written whole."""
    storage.write(uri, json.dumps({"format": INDEX_FORMAT, **index}).encode("utf-8"))


def read_index(uri: str, storage: Storage, what: str, keys: Sequence[str]) -> dict[str, Any]:
    """What ``write_index`` wrote; ConfigError naming ``what`` it should have been when it is
    not one of this format holding ``keys``."""
    try:
        index = json.loads(storage.read(uri))
        if index.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {index.get('format')!r}, this version reads {INDEX_FORMAT}")
        missing = [key for key in keys if key not in index]
        if missing:
            raise KeyError(missing[0])
    except (ValueError, KeyError, AttributeError) as err:
        raise ConfigError(
            f'"{uri}" is not a harmonize {what} index ({err}); delete it and train again to '
            "prepare the data anew"
        ) from err
    return dict(index)


def dicom_training_image(data: bytes, load_size: int) -> tuple[str, np.ndarray]:
    """A shard ``Decode`` for DICOM archives (bind ``load_size`` with ``functools.partial``):
    the object's SOPInstanceUID and its image resized to short side ``load_size``, as uint16."""
    from harmonize.dicom.decode import decode_dicom

    decoded = decode_dicom(data)
    return decoded.meta.sop_instance_uid, training_image(decoded.pixels, load_size)


# -- a GAN's two sites -----------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Both sites' images, decoded and resized once (short side ``load_size``), as uint16 levels.

    ``source`` is domain A (the site to harmonize), ``target`` domain B. Images keep their own
    aspect ratio, so each site is a sequence of (H, W) arrays of different sizes: a list held in
    memory (``prepare_training_data``), or ``ShardedImages`` that read an image only when it is
    drawn (``prepare_training_shards``: what distributed training uses, so no process holds an
    archive).
    """

    source: Sequence[np.ndarray]
    target: Sequence[np.ndarray]
    load_size: int
    source_uri: str = ""
    target_uri: str = ""
    unreadable: dict[str, int] = field(default_factory=lambda: {"source": 0, "target": 0})

    def __post_init__(self) -> None:
        for name, images in (("source", self.source), ("target", self.target)):
            if not len(images):
                raise ConfigError(f"training data has no {name} images")
            if isinstance(images, ShardedImages):
                continue  # every image was checked when its shard was built
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
            # Every draw first (image, window, flip: the order a crop at a time would make
            # them), then the drawn images read together: from shards, in parallel.
            draws = []
            for _ in range(batch_size):
                i = int(rng.integers(len(images)))
                top, left = crop_offsets(_shape(images, i), crop_size, rng)
                draws.append((i, top, left, flip and rng.random() < 0.5))
            picked = [i for i, *_ in draws]
            if isinstance(images, ShardedImages):
                pixels = images.fetch(picked)
            else:
                pixels = [images[i] for i in picked]
            crops = []
            for (_, top, left, flipped), image in zip(draws, pixels, strict=True):
                crop = image[top : top + crop_size, left : left + crop_size]
                crops.append(crop[:, ::-1] if flipped else crop)
            levels = np.stack(crops)[:, None]
            batches.append(torch.from_numpy(to_model_range(from_uint16(levels))))
        return batches[0], batches[1]

    def save(self, uri: str, storage: Storage | None = None) -> None:
        """Write the index of sharded data (its shards per site and what it says about them) as
        one JSON object, whole: the shards themselves are already stored."""
        shards = {}
        for name, images in (("source", self.source), ("target", self.target)):
            if not isinstance(images, ShardedImages):
                raise ConfigError(
                    "only sharded training data is saved (its images stay in their shards); "
                    "prepare it with prepare_training_shards"
                )
            shards[name] = images.shard_uris
        index = {
            "load_size": self.load_size,
            "source_uri": self.source_uri,
            "target_uri": self.target_uri,
            "unreadable": self.unreadable,
            "shards": shards,
        }
        write_index(uri, index, storage or Storage())

    @classmethod
    def load(cls, uri: str, storage: Storage | None = None) -> TrainingData:
        """The sharded data whose index ``save`` wrote (reads the shards' footers only)."""
        store = storage or Storage()
        keys = ("load_size", "source_uri", "target_uri", "unreadable", "shards")
        index = read_index(uri, store, "training-data", keys)
        shards = index["shards"]
        return cls(
            ShardedImages(shards["source"], store),
            ShardedImages(shards["target"], store),
            int(index["load_size"]),
            index["source_uri"],
            index["target_uri"],
            dict(index["unreadable"]),
        )


def _shape(images: Sequence[np.ndarray], i: int) -> tuple[int, ...]:
    """Image ``i``'s shape, without reading it when its shard's footer says it."""
    return images.shapes[i] if isinstance(images, ShardedImages) else images[i].shape


def _site_objects(
    name: str, uri: str, storage: Storage, limit: int | None
) -> list[tuple[str, str]]:
    return [(o.uri, o.etag) for o in list_images(uri, storage, what=f"{name} images", limit=limit)]


def _readable(name: str, uri: str, n_images: int, errors: Sequence[str]) -> None:
    """ConfigError when a site has no readable image; a warning naming one when some are not."""
    if not n_images:
        raise ConfigError(
            f'none of the {len(errors)} {name} objects under "{uri}" could be read: '
            f"{list(errors[:3])}"
        )
    if errors:
        logger.warning("skipped %d unreadable %s objects, e.g. %s", len(errors), name, errors[0])


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
    and resize every image to short side ``load_size``, in a pool of threads, into memory.

    Unreadable objects are skipped and counted (``unreadable``). Raises ConfigError when a site
    has no readable image.
    """
    store = storage or Storage()
    sites: dict[str, list[np.ndarray]] = {}
    unreadable: dict[str, int] = {}
    for name, uri in (("source", source_uri), ("target", target_uri)):
        objects = _site_objects(name, uri, store, limit)
        results = decode_objects(
            [u for u, _ in objects],
            partial(dicom_training_image, load_size=load_size),
            store,
            desc=f"decode {name}",
            progress=progress,
            workers=workers,
        )
        images = [decoded[1] for decoded, _ in results if decoded is not None]
        errors = [error for decoded, error in results if decoded is None]
        _readable(name, uri, len(images), errors)
        sites[name], unreadable[name] = images, len(errors)
    return TrainingData(
        sites["source"], sites["target"], load_size, source_uri, target_uri, unreadable
    )


def prepare_training_shards(
    source_uri: str,
    target_uri: str,
    load_size: int,
    *,
    cache_uri: str,
    storage: Storage | None = None,
    runner: ShardRunner | None = None,
    progress: bool = True,
    shard_size: int = SHARD_SIZE,
) -> TrainingData:
    """Both archives decoded and resized (short side ``load_size``) into content-keyed shards
    under ``cache_uri`` (``harmonize.training.shards``): shards already there are reused, the
    others built by ``runner`` (Ray tasks on the cluster's CPUs from the distributed driver;
    threads here by default). The target site's shards carry its mean intensity histogram.

    Unreadable objects are skipped and counted (``unreadable``). Raises ConfigError when a site
    has no readable image.
    """
    store = storage or Storage()
    settings = {"kind": "training-data", "load_size": load_size}
    sites = (("source", source_uri), ("target", target_uri))
    specs = {
        name: plan_shards(
            _site_objects(name, uri, store, None), name, settings, cache_uri, shard_size
        )
        for name, uri in sites
    }
    summaries = prepare_shards(
        [*specs["source"], *specs["target"]],
        partial(dicom_training_image, load_size=load_size),
        store,
        settings,
        histogram_groups={"target"},
        runner=runner,
        progress=progress,
    )
    built = dict(zip((s.uri for s in summaries), summaries, strict=True))
    images: dict[str, ShardedImages] = {}
    unreadable: dict[str, int] = {}
    for name, uri in sites:
        mine = [built[spec.uri] for spec in specs[name]]
        errors = [f"{u}: {why}" for s in mine for u, why in s.errors]
        _readable(name, uri, sum(s.n_images for s in mine), errors)
        images[name] = ShardedImages([s.uri for s in mine if s.n_images], store)
        unreadable[name] = len(errors)
    return TrainingData(
        images["source"], images["target"], load_size, source_uri, target_uri, unreadable
    )
