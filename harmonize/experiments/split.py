"""The benchmark on a user's own two-site data: their source and target archives split into the
experiment's train/ and test/ archives, as ``harmonize synth`` would have written them.

Each image goes to the test split when a hash of its image_id (SOPInstanceUID) falls below
``test_fraction``, else to the training split: the split is the same on every run and every
machine, whatever the order of the listing, and an image never changes sides when others are
added. The images are copied (the runs and the report then read one layout, whatever the
data's origin) under ``OUT/archive/<split>/<site>/`` with their relative paths kept, and each
split gets a ``labels.parquet`` (image_id, site, label, path, truth_path).

The truth of a source image (the same patient imaged at the target site), when there is one:
the labels table's ``truth_path`` for its image_id, relative to ``truth_uri`` (default: the
labels table's folder); else, with ``truth_uri``, the image at the same relative path under
``truth_uri`` as under ``source_uri``. Only the source's test images need one.

Example::

    config = ExperimentConfig(source_uri="s3://pacs/montgomery", target_uri="s3://pacs/shenzhen",
                              labels_uri="s3://pacs/labels.csv")
    split = split_archive(config, "s3://work/experiment/archive")
    split.train, split.test, split.source, split.target  # archive URIs, site folder names
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pydicom

from harmonize.errors import ConfigError
from harmonize.experiments.config import ExperimentConfig
from harmonize.io import dicomweb
from harmonize.io.archive import list_images
from harmonize.io.labels import PARQUET_NAME, labels_frame, read_labels, table_uri
from harmonize.io.storage import Storage, join

SPLITS = ("train", "test")


def split_of(image_id: str, test_fraction: float) -> str:
    """``test`` when the SHA-256 of ``image_id`` (as a fraction of 2**64) is below
    ``test_fraction``, else ``train``."""
    digest = hashlib.sha256(image_id.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def site_names(source_uri: str, target_uri: str) -> tuple[str, str]:
    """The site folder names: the last component of each URI, or ``source`` / ``target`` when
    the two are the same."""
    names = tuple(
        posixpath.basename(dicomweb.strip_query(u).rstrip("/")) for u in (source_uri, target_uri)
    )
    if names[0] == names[1] or not all(names):
        return "source", "target"
    return names[0], names[1]


def _image_id(blob: bytes) -> str | None:
    """The SOPInstanceUID of a DICOM file, or None when it has none or is not DICOM."""
    try:
        ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True, force=True)
        return str(ds.get("SOPInstanceUID", "")) or None
    except Exception:  # pydicom raises many types on bytes that are not DICOM
        return None


def _relative(uri: str, root: str) -> str:
    """``uri``'s path under ``root``; a PACS instance's is ``studies/S/series/X/instances/I``
    (outside its root's QIDO filters), given a ``.dcm`` ending so its copy lists as DICOM."""
    if dicomweb.is_dicomweb(root):
        return uri[len(dicomweb.strip_query(root).rstrip("/")) :].lstrip("/") + ".dcm"
    return uri[len(root.rstrip("/")) :].lstrip("/")


@dataclass(frozen=True)
class SplitArchive:
    """The split: archive URIs, the two site folder names and what went where."""

    train: str
    test: str
    source: str
    target: str
    counts: dict[str, int] = field(default_factory=dict)  # "<split> <site>" -> images
    unreadable: tuple[str, ...] = ()  # objects without a SOPInstanceUID, left out
    with_truth: int = 0  # source test images with a truth image

    def line(self) -> str:
        parts = [f"{n} {key}" for key, n in sorted(self.counts.items())]
        line = f"split: {', '.join(parts)}; {self.with_truth} source test images with truth"
        if self.unreadable:
            line += f"; left out {len(self.unreadable)} objects that are not DICOM images"
        return line


class _Truths:
    """Finds the truth image of a source image (see the module docstring)."""

    def __init__(self, table: Any, labels_uri: str, truth_uri: str | None, source_uri: str):
        root = truth_uri or posixpath.dirname(table_uri(labels_uri))
        linked = table[table["truth_path"].notna()] if "truth_path" in table else table[:0]
        self.by_id = {
            str(i): join(root, str(p))
            for i, p in zip(linked["image_id"], linked["truth_path"], strict=True)
        }
        self.truth_uri, self.source_uri = truth_uri, source_uri

    def of(self, image_id: str, uri: str, storage: Storage) -> str | None:
        if image_id in self.by_id:
            return self.by_id[image_id]
        if self.truth_uri is None:
            return None
        candidate = join(self.truth_uri, _relative(uri, self.source_uri))
        return candidate if storage.exists(candidate) else None


def split_archive(
    config: ExperimentConfig,
    out_uri: str,
    storage: Storage | None = None,
    echo: Callable[[str], Any] = lambda _: None,
) -> SplitArchive:
    """Copy the images of ``config.source_uri`` and ``config.target_uri`` into ``out_uri``/train
    and ``out_uri``/test (``config.labels_uri``, ``truth_uri`` and ``test_fraction``: see the
    module docstring); returns where they went.

    Raises:
        ConfigError: a site has no image, or no image of a split has a label.
    """
    source_uri, target_uri, labels_uri = config.source_uri, config.target_uri, config.labels_uri
    if source_uri is None or target_uri is None or labels_uri is None:
        raise ConfigError("split_archive needs a config with source_uri, target_uri, labels_uri")
    truth_uri, test_fraction = config.truth_uri, config.test_fraction
    store = storage or Storage()
    table = read_labels(labels_uri, store)
    label_of = {str(i): v for i, v in zip(table["image_id"], table["label"], strict=True)}
    source, target = site_names(source_uri, target_uri)
    truths = _Truths(table, labels_uri, truth_uri, source_uri)
    archives = {split: join(out_uri, split) for split in SPLITS}
    rows: dict[str, list[dict[str, object]]] = {split: [] for split in SPLITS}
    counts: Counter[str] = Counter()
    unreadable: list[str] = []
    with_truth = 0
    for site, root in ((target, target_uri), (source, source_uri)):
        objects = list_images(root, store, what=f"{site} images")
        echo(f"    copying {len(objects)} {site} images from {root}")
        for obj in objects:
            blob = store.read(obj.uri)
            image_id = _image_id(blob)
            if image_id is None:
                unreadable.append(obj.uri)
                continue
            split = split_of(image_id, test_fraction)
            path = f"{site}/{_relative(obj.uri, root)}"
            store.write(join(archives[split], path), blob)
            truth_path = None
            if site == source and split == "test":
                found = truths.of(image_id, obj.uri, store)
                if found is not None:
                    truth_path = f"truth/{target}/{_relative(obj.uri, root)}"
                    store.write(join(archives[split], truth_path), store.read(found))
                    with_truth += 1
            label = label_of.get(image_id)
            rows[split].append(
                {
                    "image_id": image_id,
                    "site": site,
                    "label": None if label is None or pd.isna(label) else int(label),
                    "path": path,
                    "truth_path": truth_path,
                }
            )
            counts[f"{split} {site}"] += 1
    for split in SPLITS:
        frame = labels_frame(rows[split])
        if frame["label"].notna().sum() == 0:
            raise ConfigError(
                f'none of the {len(frame)} {split} images has a label in "{labels_uri}": its '
                "image_id column must hold the images' SOPInstanceUIDs; check the table (with "
                "very few images, a test fraction nearer 0.5 may help)"
            )
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        store.write(join(archives[split], PARQUET_NAME), buffer.getvalue())
    return SplitArchive(
        archives["train"], archives["test"], source, target, dict(counts), tuple(unreadable),
        with_truth,
    )  # fmt: skip
