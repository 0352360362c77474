"""Manifests built from known rows for the report tests: rows, histograms, DICOM, tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from scipy.stats import wasserstein_distance

from harmonize.io.manifest import ManifestWriter, empty_row
from harmonize.io.storage import Storage
from harmonize.metrics.histogram import HIST_BINS

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
CENTERS = (np.arange(HIST_BINS) + 0.5) / HIST_BINS


def histogram(rng: np.random.Generator, center: float, spread: float = 0.12) -> list[float]:
    """A 64-bin probability histogram around ``center`` (float32 values, as the manifest holds)."""
    counts = np.exp(-0.5 * ((CENTERS - center) / spread) ** 2) * rng.uniform(0.5, 1.5, HIST_BINS)
    return (counts / counts.sum()).astype(np.float32).tolist()


TARGET_HIST = histogram(np.random.default_rng(99), 0.55)


def reference_w1(p: Any, q: Any) -> float:
    """W1 between two histograms on bin centres, by scipy (independent of harmonize)."""
    return float(wasserstein_distance(CENTERS, CENTERS, np.asarray(p), np.asarray(q)))


def make_row(image_id: str | None, run_id: str, minutes: float, **values: Any) -> dict[str, Any]:
    row = empty_row()
    row.update(
        image_id=image_id,
        source_uri=f"/archive/mc-like/{image_id}.dcm",
        source_etag="1-1",
        site="mc-like",
        method="histogram",
        mode="direct",
        model_uri="/nonexistent-model",
        config_hash="cfg-a",
        run_id=run_id,
        status="ok",
        processed_at=T0 + timedelta(minutes=minutes),
    )
    row.update(values)
    return row


def write_manifest(
    out: Path | str, run_id: str, rows: list[dict[str, Any]], store: Storage | None = None
) -> None:
    writer = ManifestWriter(str(out), run_id, store or Storage())
    writer.add(rows)
    writer.close()


def section_rows(markdown: str, title: str) -> dict[str, list[str]]:
    """The data rows of the first table of a section, by first cell, as lists of cells."""
    section = markdown.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in rows]
    return {c[0]: c for c in cells}


def write_dicom(path: Path, pixels: np.ndarray, sop_uid: str) -> str:
    """A minimal 12-bit MONOCHROME2 CR image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CR_IMAGE_STORAGE, sop_uid, "CR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.clip(pixels, 0, 1) * 4095).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return str(path)
