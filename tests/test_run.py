"""End-to-end `harmonize run`: local folder and real S3, local executor and Ray Data.

Invariants: count in = count out; a bad object is an error row, not a crash; a re-run writes no
new ok rows; the manifest's SSIM equals scikit-image's on the same images; the histogram moves to
the target site.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pydicom
import pytest
from skimage.metrics import structural_similarity

from harmonize.dicom.decode import decode_dicom
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage
from harmonize.metrics.histogram import intensity_histogram, wasserstein_1d
from harmonize.models.registry import load_model
from harmonize.run import RunOptions, run_harmonization

from conftest import SOURCE, TARGET


def _run(archive: Path, model: str, out: Path | str, executor: str, **kw) -> object:
    labels = kw.pop("labels", str(archive / "labels.parquet"))
    input_uri = kw.pop("input_uri", str(archive / SOURCE))
    storage = kw.pop("storage", Storage())
    return run_harmonization(
        input_uri=input_uri,
        out_uri=str(out),
        method="histogram",
        model_uri=model,
        storage=storage,
        options=RunOptions(executor=executor, labels_uri=labels, progress=False, **kw),
    )


def _manifest(out: Path | str, storage: Storage | None = None) -> pd.DataFrame:
    return read_manifest(str(out), storage).to_pandas()


@pytest.fixture(scope="module")
def local_run(archive: Path, histogram_model: str, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run-local")
    _run(archive, histogram_model, out, "local")
    return out


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
        ref = structural_similarity(
            before,
            after,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert abs(row.ssim - ref) < 1e-4
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


def test_rerun_is_idempotent_and_a_bad_object_becomes_an_error_row(
    archive, histogram_model, tmp_path
) -> None:
    inp = tmp_path / "in"
    shutil.copytree(archive / SOURCE, inp / SOURCE)
    (inp / SOURCE / "broken.dcm").write_bytes(b"not a dicom file at all")
    (inp / SOURCE / "truncated.dcm").write_bytes(
        next((archive / SOURCE).glob("*.dcm")).read_bytes()[:3000]
    )
    n = len(list((inp / SOURCE).glob("*.dcm")))
    out = tmp_path / "out"
    first = _run(archive, histogram_model, out, "local", input_uri=str(inp))
    assert first.total == n and first.counts["error"] == 2 and first.counts["ok"] == n - 2
    errors = _manifest(out).query("status == 'error'")
    assert sorted(Path(u).name for u in errors.source_uri) == ["broken.dcm", "truncated.dcm"]
    assert errors.error.str.startswith("decode: DicomError").all()
    second = _run(archive, histogram_model, out, "local", input_uri=str(inp))
    assert second.counts == {"skipped": n - 2, "error": 2}  # errors are retried, ok are not
    df = _manifest(out)
    assert len(df) == 2 * n and (df.status == "ok").sum() == n - 2
    by_status = (
        duckdb.connect()
        .execute(
            f"SELECT status, count(*) FROM read_parquet('{out}/manifest/*/*.parquet', "
            "hive_partitioning=true) GROUP BY status ORDER BY status"
        )
        .fetchall()
    )
    assert by_status == [("error", 4), ("ok", n - 2), ("skipped", n - 2)]


@pytest.mark.slow
@pytest.mark.parametrize("actors", [None, 1], ids=["cpu-tasks", "actor-pool"])
def test_ray_stream_matches_the_local_run(
    archive, histogram_model, local_run, ray_session, tmp_path, actors
) -> None:
    summary = _run(archive, histogram_model, tmp_path / "out", "ray", batch_size=3, actors=actors)
    assert summary.counts == {"ok": 8}
    ray_df = _manifest(tmp_path / "out").set_index("image_id").sort_index()
    local_df = _manifest(local_run).set_index("image_id").sort_index()
    assert list(ray_df.index) == list(local_df.index)
    np.testing.assert_allclose(ray_df.ssim, local_df.ssim, atol=1e-6)
    assert (ray_df.label == local_df.label).all()
    for a, b in zip(ray_df.out_uri, local_df.out_uri, strict=True):  # same derived image
        da, db = (pydicom.dcmread(u) for u in (a, b))
        assert da.SOPInstanceUID == db.SOPInstanceUID and da.PixelData == db.PixelData


@pytest.mark.slow
def test_ray_stream_on_s3_with_errors_and_rerun(
    archive, histogram_model, s3_server, ray_session, dciodvfy
) -> None:
    store = Storage(endpoint_url=s3_server.endpoint_url)
    bucket = s3_server.create_bucket("run-test")
    for p in sorted((archive / SOURCE).glob("*.dcm"))[:5]:
        store.write(f"{bucket}/archive/{SOURCE}/{p.name}", p.read_bytes())
    store.write(f"{bucket}/archive/{SOURCE}/zz-bad.dcm", b"\x00" * 200)
    store.write(f"{bucket}/archive/labels.parquet", (archive / "labels.parquet").read_bytes())
    model_uri = f"{bucket}/models/histogram"
    store.write(
        f"{model_uri}/harmonizer.json", (Path(histogram_model) / "harmonizer.json").read_bytes()
    )
    out = f"{bucket}/runs/histogram"
    kw = {
        "input_uri": f"{bucket}/archive/{SOURCE}",
        "labels": f"{bucket}/archive/labels.parquet",
        "storage": store,
    }
    first = _run(archive, model_uri, out, "ray", **kw)
    assert first.counts == {"ok": 5, "error": 1}
    second = _run(archive, model_uri, out, "ray", **kw)
    assert second.counts == {"skipped": 5, "error": 1}
    df = _manifest(out, store)
    assert len(df) == 12 and (df.status == "ok").sum() == 5
    assert df.label.notna().sum() == 10  # 5 ok + 5 skipped rows carry labels
    ok = df[df.status == "ok"]
    assert all(store.exists(u) for u in ok.out_uri)
    # The derived DICOM adds no conformance error to its synthetic source (which has none).
    local = Path(archive).parent / "derived-from-s3.dcm"
    local.write_bytes(store.read(ok.out_uri.iloc[0]))
    report = subprocess.run([dciodvfy, str(local)], capture_output=True, text=True)
    assert [
        ln for ln in (report.stdout + report.stderr).splitlines() if ln.startswith("Error")
    ] == []


def test_a_model_changed_mid_run_turns_rows_into_errors(archive, histogram_model) -> None:
    """The CPU-task harmonize stage checks the model hash the run planned with."""
    from harmonize.distributed.stream import _decode_batch, _harmonize_batch, _table
    from harmonize.pipeline import RunSpec, new_row

    spec = RunSpec(
        input_uri=str(archive),
        out_uri="/unused",
        method="histogram",
        model_uri=histogram_model,
        model_hash="0" * 16,
        run_id="r",
    )
    source = sorted((archive / SOURCE).glob("*.dcm"))[:2]
    rows = [new_row(spec, str(p), "e", p.stat().st_size, SOURCE) for p in source]
    out = _harmonize_batch(_decode_batch(_table(rows), Storage()), spec, Storage()).to_pylist()
    assert [r["status"] for r in out] == ["error", "error"]
    assert all("changed during run" in r["error"] and r["pixels"] is None for r in out)
