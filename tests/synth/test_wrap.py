"""Real PNGs wrapped as DICOM under a site profile, locally and on S3."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from harmonize.io.storage import Storage
from harmonize.synth import (
    PROFILES,
    read_labels,
    synthesize_archive,
    wrap_pngs,
)

from conftest import REAL_PNG_DIR

REAL_PNGS = REAL_PNG_DIR
MATRIX = 256


def test_wrap_pngs_keeps_pixels_and_builds_a_two_site_archive(tmp_path: Path) -> None:
    out = str(tmp_path)
    first = wrap_pngs(str(REAL_PNGS / "mc"), out, "mc-like", progress=False)
    second = wrap_pngs(str(REAL_PNGS / "tbx11k"), out, "shenzhen-like", progress=False)
    table = read_labels(out)
    assert len(first) == 2 and len(second) == 3 and len(table) == 5
    assert table.groupby("site").size().to_dict() == {"mc-like": 2, "shenzhen-like": 3}
    truth = pd.read_csv(REAL_PNGS / "labels.csv").set_index("file")["label"]
    for folder, rows in (("mc", first), ("tbx11k", second)):
        for row in rows.itertuples():
            ds = pydicom.dcmread(tmp_path / row.path)
            profile = PROFILES[row.site]
            png = np.asarray(Image.open(REAL_PNGS / folder / row.source), dtype=np.int64)
            stored = ds.pixel_array.astype(np.int64)
            if ds.PhotometricInterpretation == "MONOCHROME1":
                stored = profile.max_stored - stored
            np.testing.assert_array_equal(stored, (png * profile.max_stored + 127) // 255)
            assert row.label == truth[f"{folder}/{row.source}"]
            assert row.image_id in set(table["image_id"])
    # Wrapping again is idempotent (same UIDs); a matrix override resamples.
    wrap_pngs(str(REAL_PNGS / "mc"), out, "mc-like", progress=False)
    assert len(read_labels(out)) == 5
    resized = wrap_pngs(
        str(REAL_PNGS / "mc"), str(tmp_path / "r"), "mc-like", matrix=200, progress=False
    )
    assert pydicom.dcmread(tmp_path / "r" / resized["path"][0]).Rows == 200


def test_wrap_pngs_without_labels_gives_null_labels(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray((np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)).save(
        folder / "a.png"
    )
    table = wrap_pngs(str(folder), str(tmp_path / "out"), "portable-like", progress=False)
    assert table["label"].isna().all()
    ds = pydicom.dcmread(tmp_path / "out" / table["path"][0])
    expected = (np.arange(64 * 64).reshape(64, 64) % 256 * 1023 + 127) // 255
    np.testing.assert_array_equal(ds.pixel_array, expected)


@pytest.mark.slow
def test_archive_and_wrapped_pngs_on_s3(s3_server: Any, tmp_path: Path) -> None:
    store = Storage(endpoint_url=s3_server.endpoint_url)
    out = f"{s3_server.create_bucket('synth-test')}/archive"
    synthesize_archive(out, ["mc-like"], 2, seed=1, storage=store, matrix=96, progress=False)
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(folder / "a.png")
    wrap_pngs(str(folder), out, "shenzhen-like", storage=store, progress=False)
    table = read_labels(out, store)
    assert table.groupby("site").size().to_dict() == {"mc-like": 2, "shenzhen-like": 1}
    listed = [o.uri for o in store.list(out, suffixes=(".dcm",))]
    assert sorted(listed) == sorted(f"{out}/{p}" for p in table["path"])
    ds = pydicom.dcmread(io.BytesIO(store.read(f"{out}/{table['path'].iloc[-1]}")))
    assert int(ds.pixel_array.max()) == (200 * 4095 + 127) // 255
