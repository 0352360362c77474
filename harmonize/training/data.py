"""Training data held in memory: both sites' images for a GAN (``TrainingData``), and what every
kind of training data shares (decoding an archive in threads, one pickle-free .npz file).

Images are decoded and resized once, kept as 16-bit levels, and cached by the distributed driver
as one .npz object that each worker loads.

Example::

    data = prepare_training_data("s3://pacs/montgomery", "s3://pacs/shenzhen", load_size=286)
    real_a, real_b = data.sample(np.random.default_rng(0), batch_size=1, crop_size=256)
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from harmonize.errors import ConfigError, HarmonizeError
from harmonize.imaging.preprocess import from_uint16, random_crop, to_model_range, training_image
from harmonize.io.archive import list_images
from harmonize.io.storage import Storage

logger = logging.getLogger(__name__)

T = TypeVar("T")
SITES = ("source", "target")


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


def write_npz(
    uri: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], storage: Storage
) -> None:
    """``arrays`` and the JSON ``meta`` as one .npz object (no pickled objects), written whole or
    not at all."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, meta=np.array(json.dumps(meta)), **arrays)
    storage.write(uri, buffer.getvalue())


def read_npz(
    uri: str,
    storage: Storage,
    what: str,
    parse: Callable[[dict[str, Any], Mapping[str, np.ndarray]], T],
) -> T:
    """``parse(meta, arrays)`` of what ``write_npz`` wrote; ConfigError naming ``what`` the file
    should have been when it is not one."""
    data = storage.read(uri)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return parse(json.loads(str(npz["meta"])), npz)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f'"{uri}" is not a harmonize {what} file: {err}') from err


# -- a GAN's two sites -----------------------------------------------------------------------------
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
        arrays: dict[str, np.ndarray] = {}
        for name, images in (("source", self.source), ("target", self.target)):
            arrays[f"{name}_shapes"] = np.array([im.shape for im in images], dtype=np.int64)
            arrays[f"{name}_levels"] = np.concatenate([im.ravel() for im in images])
        write_npz(uri, meta, arrays, storage or Storage())

    @classmethod
    def load(cls, uri: str, storage: Storage | None = None) -> TrainingData:
        """Read what ``save`` wrote."""

        def parse(meta: dict[str, Any], npz: Mapping[str, np.ndarray]) -> TrainingData:
            sites = {}
            for name in SITES:
                shapes, levels = npz[f"{name}_shapes"], npz[f"{name}_levels"]
                ends = np.cumsum([int(h) * int(w) for h, w in shapes])
                chunks = np.split(levels, ends[:-1])
                sites[name] = [c.reshape(h, w) for c, (h, w) in zip(chunks, shapes, strict=True)]
            return cls(
                sites["source"],
                sites["target"],
                int(meta["load_size"]),
                meta["source_uri"],
                meta["target_uri"],
                dict(meta["unreadable"]),
            )

        return read_npz(uri, storage or Storage(), "training-data", parse)


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
    from harmonize.dicom.decode import decode_dicom

    def decode(blob: bytes) -> np.ndarray:
        return training_image(decode_dicom(blob).pixels, load_size)

    store = storage or Storage()
    sites: dict[str, list[np.ndarray]] = {}
    unreadable: dict[str, int] = {}
    for name, uri in (("source", source_uri), ("target", target_uri)):
        objects = list_images(uri, store, what=f"{name} images", limit=limit)
        results = decode_objects(
            [o.uri for o in objects],
            decode,
            store,
            desc=f"decode {name}",
            progress=progress,
            workers=workers,
        )
        images = [image for image, _ in results if image is not None]
        errors = [error for image, error in results if image is None]
        if not images:
            raise ConfigError(
                f'none of the {len(results)} {name} objects under "{uri}" could be read: '
                f"{errors[:3]}"
            )
        if errors:
            logger.warning(
                "skipped %d unreadable %s objects, e.g. %s", len(errors), name, errors[0]
            )
        sites[name], unreadable[name] = images, len(errors)
    return TrainingData(
        sites["source"], sites["target"], load_size, source_uri, target_uri, unreadable
    )
