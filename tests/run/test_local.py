"""The one-process executor end to end on a local folder: one ok row and one derived image per
object; the manifest's SSIM equals scikit-image's on the same images; the histogram moves to the
target site; neural methods in both modes; batches give the rows one object at a time gives."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import structural_similarity

from harmonize.dicom.decode import decode_dicom
from harmonize.io.manifest import read_manifest
from harmonize.metrics.histogram import intensity_histogram, wasserstein_1d
from harmonize.models.registry import load_model
from harmonize.run.local import LocalExecutor

from conftest import SOURCE, TARGET, run_archive


def _manifest(out: Path | str) -> pd.DataFrame:
    return read_manifest(str(out)).to_pandas()


def _reference_ssim(before: np.ndarray, after: np.ndarray) -> float:
    return structural_similarity(
        before, after, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )


def test_local_run_writes_one_ok_row_and_one_derived_image_per_object(archive, local_run) -> None:
    df = _manifest(local_run)
    sources = sorted(str(p) for p in (archive / SOURCE).glob("*.dcm"))
    assert sorted(df.source_uri) == sources  # count in = count out, nothing else
    assert (df.status == "ok").all() and df.error.isna().all()
    labels = pd.read_parquet(archive / "labels.parquet").set_index("image_id")
    assert (df.set_index("image_id").label == labels.label.loc[df.image_id].values).all()
    assert set(df.site) == {SOURCE}
    for row in df.itertuples():
        assert Path(row.out_uri).is_file() and row.out_uri.startswith(str(local_run / "images"))
    assert df.run_id.nunique() == 1 and df.config_hash.nunique() == 1


def test_manifest_ssim_equals_scikit_image(local_run, histogram_model) -> None:
    df = _manifest(local_run)
    model = load_model(histogram_model).harmonizer
    for row in df.head(3).itertuples():
        before = decode_dicom(Path(row.source_uri).read_bytes()).pixels
        after = model.transform(before)
        assert abs(row.ssim - _reference_ssim(before, after)) < 1e-4
        np.testing.assert_allclose(row.hist_in, intensity_histogram(before), atol=1e-6)


def test_derived_image_decodes_to_the_harmonized_pixels(local_run, histogram_model) -> None:
    df = _manifest(local_run)
    model = load_model(histogram_model).harmonizer
    row = df.iloc[0]
    source = decode_dicom(Path(row.source_uri).read_bytes())
    derived = decode_dicom(Path(row.out_uri).read_bytes())
    assert derived.meta.sop_instance_uid != source.meta.sop_instance_uid
    assert (derived.meta.rows, derived.meta.cols, derived.meta.bits_stored) == (
        source.meta.rows,
        source.meta.cols,
        source.meta.bits_stored,
    )
    step = 1.0 / (2**source.meta.bits_stored - 1)
    assert np.abs(derived.pixels - model.transform(source.pixels)).max() <= step


def test_histogram_distance_to_target_drops_below_30_percent(archive, local_run) -> None:
    """The sanity check without a classifier: mc-like → shenzhen-like by histogram matching."""
    target = [decode_dicom(p.read_bytes()).pixels for p in sorted((archive / TARGET).glob("*.dcm"))]
    target_hist = np.mean([intensity_histogram(t) for t in target], axis=0)
    df = _manifest(local_run)
    before = np.mean([wasserstein_1d(np.asarray(h), target_hist) for h in df.hist_in])
    after = np.mean([wasserstein_1d(np.asarray(h), target_hist) for h in df.hist_out])
    assert after < 0.3 * before, (before, after)


@pytest.mark.parametrize("mode", ["direct", "curve", "local"])
def test_local_run_in_each_mode(archive, cyclegan_model, tmp_path, mode) -> None:
    summary = run_archive(archive, cyclegan_model, tmp_path, method="cyclegan", mode=mode, limit=3)
    assert summary.counts == {"ok": 3}
    df = _manifest(tmp_path)
    assert set(df["mode"]) == {mode} and set(df.method) == {"cyclegan"}
    model = load_model(cyclegan_model, expected_method="cyclegan", mode=mode).harmonizer
    row = df.iloc[0]
    before = decode_dicom(Path(row.source_uri).read_bytes()).pixels
    after = model.transform(before)
    assert abs(row.ssim - _reference_ssim(before, after)) < 1e-4
    derived = decode_dicom(Path(row.out_uri).read_bytes()).pixels
    assert np.abs(derived - after).max() <= 1.0 / (2 ** int(row.bits_stored) - 1)
    if mode == "curve":  # a monotone curve: the order of pixel values is kept
        order = np.argsort(before, axis=None, kind="stable")
        assert np.all(np.diff(after.ravel()[order]) >= 0)


class _Recording(LocalExecutor):
    """The local executor, recording the order of the rows it is given and of those it yields."""

    def rows(self, todo, spec, storage) -> Iterator[dict[str, Any]]:
        self.given, self.yielded = [r["source_uri"] for r in todo], []
        for row in super().rows(todo, spec, storage):
            self.yielded.append(row["source_uri"])
            yield row


def test_batches_give_the_rows_of_one_object_at_a_time(archive, histogram_model, tmp_path) -> None:
    """Seven objects, one bad, in batches of 3 (the last one short) and of 1: the same rows
    (timings and processed_at aside), yielded in the order given, one per object."""
    inp = tmp_path / "in"
    inp.mkdir()
    for path in sorted((archive / SOURCE).glob("*.dcm"))[:6]:
        shutil.copyfile(path, inp / path.name)
    (inp / "bad.dcm").write_bytes(b"\x00" * 200)

    def rows(batch_size: int) -> pd.DataFrame:
        out = tmp_path / f"out-{batch_size}"
        executor = _Recording(batch_size=batch_size)
        summary = run_archive(
            archive, histogram_model, out, executor, input_uri=str(inp), run_id="same"
        )
        assert summary.counts == {"ok": 6, "error": 1}
        assert executor.yielded == executor.given and len(executor.given) == 7
        df = _manifest(out).sort_values("source_uri", ignore_index=True)
        df["out_uri"] = df.out_uri.str.removeprefix(str(out))
        return df.drop(columns=[c for c in df.columns if c.endswith("_s") or c == "processed_at"])

    batched, alone = rows(3), rows(1)
    assert len(batched) == 7 and batched.source_uri.is_unique  # count in = count out
    assert batched.error.dropna().str.startswith("decode: not a DICOM file").all()
    pd.testing.assert_frame_equal(batched, alone)
