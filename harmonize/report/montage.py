"""Picks and reads a few (original, harmonized) image pairs per configuration for the montage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harmonize.dicom.decode import decode_dicom
from harmonize.io.storage import Storage
from harmonize.report.plots import downsample
from harmonize.report.summary import MethodSummary

IMAGES_PER_CONFIG = 4
MAX_TRIES_PER_CONFIG = 3 * IMAGES_PER_CONFIG  # unreadable candidates are skipped, up to this

Pair = tuple[str, np.ndarray, np.ndarray]  # image id, original, harmonized (downsampled)


class ImageReader:
    """Reads and downsamples display images once per URI; remembers why reads failed."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.cache: dict[str, np.ndarray] = {}
        self.failures: list[str] = []

    def __call__(self, uri: object) -> np.ndarray | None:
        if not isinstance(uri, str) or not uri:
            return None
        if uri not in self.cache:
            try:
                pixels = decode_dicom(self.storage.read(uri)).pixels
            except Exception as err:  # noqa: BLE001 - an unreadable image is left out, not fatal
                self.failures.append(f'"{uri}": {type(err).__name__}: {err}')
                return None
            self.cache[uri] = downsample(np.asarray(pixels, dtype=np.float32))
        return self.cache[uri]


def _candidates(summary: MethodSummary, shared: set[str]) -> list[tuple[str, str, str]]:
    ok = summary.rows.ok[["image_id", "source_uri", "out_uri"]].dropna()
    rows = [(str(r.image_id), str(r.source_uri), str(r.out_uri)) for r in ok.itertuples()]
    # Images every configuration harmonized come first, so the columns compare methods.
    return sorted(rows, key=lambda r: (r[0] not in shared, r[0]))


def read_pairs(
    summaries: Sequence[MethodSummary], storage: Storage, per_config: int = IMAGES_PER_CONFIG
) -> tuple[list[tuple[str, list[Pair]]], list[str]]:
    """Up to ``per_config`` readable pairs per configuration, and notes on images left out."""
    ids = [set(s.rows.ok["image_id"].dropna()) for s in summaries]
    shared = set.intersection(*ids) if ids else set()
    read = ImageReader(storage)
    out = []
    for s in summaries:
        pairs: list[Pair] = []
        for image_id, source_uri, out_uri in _candidates(s, shared)[:MAX_TRIES_PER_CONFIG]:
            before, after = read(source_uri), read(out_uri)
            if before is not None and after is not None:
                pairs.append((image_id, before, after))
            if len(pairs) == per_config:
                break
        out.append((s.label, pairs))
    notes = [f"montage: left out unreadable {f}" for f in read.failures[:5]]
    if len(read.failures) > 5:
        notes.append(f"montage: {len(read.failures) - 5} more unreadable images left out")
    return out, notes
