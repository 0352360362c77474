"""The Ray Data executor: the same rows and derived images as the local one (CPU tasks and an
actor pool, with GPU decode in the actors too), on real S3 with errors and a re-run, neural
methods in both modes, the classifier's scores and the model check on both executors."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from harmonize.classifier.model import load_classifier
from harmonize.dicom.decode import decode_dicom
from harmonize.dicom.deidentify import DeidentifyOptions, pseudonymous_uid
from harmonize.distributed.stream import (
    RayStreamExecutor,
    _decode_batch,
    _encode_batch,
    _harmonize_batch,
    _table,
    make_executor,
)
from harmonize.errors import ConfigError
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage
from harmonize.models.registry import load_model
from harmonize.run.local import LocalExecutor
from harmonize.run.plan import new_row
from harmonize.run.spec import RunSpec
from harmonize.run.stages import read_and_decode_batch

from conftest import SOURCE, TARGET, run_archive


def _manifest(out: Path | str, storage: Storage | None = None) -> pd.DataFrame:
    return read_manifest(str(out), storage).to_pandas()


def test_make_executor_turns_the_command_line_choice_into_an_executor() -> None:
    assert isinstance(make_executor("local", actors=3), LocalExecutor)
    stream = make_executor("ray", address="ray://head:10001", actors=2, batch_size=4)
    assert stream == RayStreamExecutor("ray://head:10001", 2, 4)
    assert make_executor("ray", gpu_decode=False).gpu_decode is False
    assert make_executor("local", batch_size=3).batch_size == 3
    assert (stream.name, make_executor("local").name) == ("ray", "local")
    with pytest.raises(ConfigError, match='executor must be "ray" or "local", got "dask"'):
        make_executor("dask")
    with pytest.raises(ConfigError, match="actors and batch_size must be >= 1"):
        make_executor("ray", batch_size=0)


@pytest.mark.slow
@pytest.mark.parametrize("actors", [None, 1], ids=["cpu-tasks", "actor-pool"])
def test_ray_stream_matches_the_local_run(
    archive, histogram_model, local_run, ray_session, tmp_path, actors
) -> None:
    stream = RayStreamExecutor(batch_size=3, actors=actors)
    summary = run_archive(archive, histogram_model, tmp_path / "out", stream)
    assert summary.counts == {"ok": 8}
    ray_df = _manifest(tmp_path / "out").set_index("image_id").sort_index()
    local_df = _manifest(local_run).set_index("image_id").sort_index()
    assert list(ray_df.index) == list(local_df.index)
    np.testing.assert_allclose(ray_df.ssim, local_df.ssim, atol=1e-6)
    assert (ray_df.label == local_df.label).all()
    for a, b in zip(ray_df.out_uri, local_df.out_uri, strict=True):  # same derived image
        da, db = (pydicom.dcmread(u) for u in (a, b))
        assert da.SOPInstanceUID == db.SOPInstanceUID and da.PixelData == db.PixelData


def _j2k_input(archive: Path, folder: Path, n: int, native: int = 0) -> Path:
    """Under ``folder``: ``n`` JPEG 2000 lossless images (the archive's target site's),
    ``native`` uncompressed ones (its source site's, RLE there) and one bad object."""
    folder.mkdir(parents=True)
    for index, path in enumerate(sorted((archive / TARGET).glob("*.dcm"))[:n]):
        shutil.copyfile(path, folder / f"j2k-{index}.dcm")
    for index, path in enumerate(sorted((archive / SOURCE).glob("*.dcm"))[:native]):
        ds = pydicom.dcmread(path)
        ds.decompress()
        ds.save_as(folder / f"native-{index}.dcm", enforce_file_format=True)
    (folder / "zz-bad.dcm").write_bytes(b"\x00" * 200)
    return folder


@pytest.mark.slow
def test_gpu_decode_in_the_actors_gives_the_rows_of_the_local_run(
    archive, histogram_model, ray_session, tmp_path
) -> None:
    """JPEG 2000 objects decoded in the harmonize actor (on its CPU here: no nvImageCodec) end
    as the local run's rows, the bad object's error included."""
    inp = _j2k_input(archive, tmp_path / "in", 4)
    stream = RayStreamExecutor(batch_size=2, actors=1, gpu_decode=True)
    summaries = [
        run_archive(archive, histogram_model, tmp_path / name, executor, input_uri=str(inp))
        for name, executor in (("ray", stream), ("local", LocalExecutor()))
    ]
    assert [s.counts for s in summaries] == [{"ok": 4, "error": 1}] * 2
    ray_df, local_df = (
        _manifest(tmp_path / name).set_index("source_uri").sort_index() for name in ("ray", "local")
    )
    assert list(ray_df.index) == list(local_df.index)
    for column in ("image_id", "status", "error", "decoder", "transfer_syntax", "label"):
        assert ray_df[column].equals(local_df[column]), column
    assert set(ray_df.transfer_syntax.dropna()) == {JPEG2000Lossless}
    np.testing.assert_allclose(ray_df.ssim, local_df.ssim, atol=1e-6)
    ok = ray_df.status == "ok"
    for a, b in zip(ray_df.out_uri[ok], local_df.out_uri[ok], strict=True):  # same derived image
        da, db = (pydicom.dcmread(u) for u in (a, b))
        assert da.SOPInstanceUID == db.SOPInstanceUID and da.PixelData == db.PixelData


def test_the_cpu_stage_leaves_objects_a_gpu_decodes_to_the_harmonize_stage(
    archive, histogram_model, tmp_path
) -> None:
    """With GPU decode the CPU stage decodes only the native objects (and the bad one, into its
    error); the JPEG 2000 ones go on as their bytes, and the harmonize stage decodes them into
    the rows, pseudonymous image ids included, that decoding them all at once gives."""
    inp = _j2k_input(archive, tmp_path / "in", 2, native=1)
    spec = RunSpec(
        input_uri=str(inp),
        out_uri=str(tmp_path / "out"),
        method="histogram",
        model_uri=histogram_model,
        model_hash=load_model(histogram_model).model_hash,
        run_id="r",
        deidentify=(options := DeidentifyOptions("a secret of at least sixteen characters")),
    )

    def todo() -> list[dict]:
        return [new_row(spec, str(p), "e", p.stat().st_size, SOURCE) for p in sorted(inp.iterdir())]

    decoded = _decode_batch(_table(todo()), spec, Storage(), leave_to_gpu=True).to_pylist()
    assert [r["decoder"] for r in decoded] == [None, None, "cpu", None]
    assert [r["status"] for r in decoded] == ["ok", "ok", "ok", "error"]
    assert [r["pixels"][128:132] for r in decoded[:2]] == [b"DICM", b"DICM"]  # the objects
    assert decoded[3]["error"].startswith("decode: not a DICOM file")
    harmonized = _harmonize_batch(_table(decoded), spec, Storage()).to_pylist()
    assert [r["decoder"] for r in harmonized] == ["cpu", "cpu", "cpu", None]
    at_once = read_and_decode_batch(todo(), spec, Storage())
    assert [r["image_id"] for r in harmonized] == [r["image_id"] for r in at_once]
    pseudonyms = [
        pseudonymous_uid(decode_dicom(p.read_bytes()).meta.sop_instance_uid, options)
        for p in sorted(inp.iterdir())[:3]
    ]
    assert [r["image_id"] for r in harmonized[:3]] == pseudonyms  # de-identified exactly once
    for row, alone in zip(harmonized[:3], at_once[:3], strict=True):
        assert row["ssim"] is not None and row["header"] == alone["header"]


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
        "labels_uri": f"{bucket}/archive/labels.parquet",
        "storage": store,
    }
    first = run_archive(archive, model_uri, out, RayStreamExecutor(), **kw)
    assert first.counts == {"ok": 5, "error": 1}
    second = run_archive(archive, model_uri, out, RayStreamExecutor(), **kw)
    assert second.counts == {"skipped": 5, "error": 1}
    df = _manifest(out, store)
    assert len(df) == 7 and (df.status == "ok").sum() == 5  # the skips: in the run summary
    assert df[df.status == "ok"].label.notna().all()
    ok = df[df.status == "ok"]
    assert all(store.exists(u) for u in ok.out_uri)
    # The derived DICOM adds no conformance error to its synthetic source (which has none).
    local = Path(archive).parent / "derived-from-s3.dcm"
    local.write_bytes(store.read(ok.out_uri.iloc[0]))
    report = subprocess.run([dciodvfy, str(local)], capture_output=True, text=True)
    assert [
        ln for ln in (report.stdout + report.stderr).splitlines() if ln.startswith("Error")
    ] == []


@pytest.mark.slow
def test_ray_run_modes_have_their_own_config_and_outputs(
    archive, cyclegan_model, ray_session, tmp_path
) -> None:
    def run(mode: str) -> dict[str, int]:
        summary = run_archive(
            archive, cyclegan_model, tmp_path, RayStreamExecutor(), method="cyclegan",
            mode=mode, limit=3, labels_uri=None,
        )  # fmt: skip
        return dict(summary.counts)

    for mode in ("curve", "direct"):
        assert run(mode) == {"ok": 3}
    df = _manifest(tmp_path)
    assert len(df) == 6 and df.groupby("mode").config_hash.nunique().to_dict() == {
        "curve": 1,
        "direct": 1,
    }
    assert df.config_hash.nunique() == 2 and df.out_uri.nunique() == 6
    # A re-run of one mode skips only that mode's objects.
    assert run("curve") == {"skipped": 3}


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_scores_in_the_manifest_equal_scoring_the_images_directly(
    executor: str, archive: Path, histogram_model: str, classifier_model: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    if executor == "ray":
        request.getfixturevalue("ray_session")
    summary = run_archive(
        archive, histogram_model, tmp_path, make_executor(executor), classifier=classifier_model
    )
    df = _manifest(tmp_path)
    n = len(list((archive / SOURCE).glob("*.dcm")))
    assert summary.counts == {"ok": n} and len(df) == n  # count in = count out
    classifier = load_classifier(classifier_model)
    assert (df.classifier_uri == classifier_model).all()
    assert (df.classifier_hash == classifier.model_hash).all()
    originals = [decode_dicom(Path(u).read_bytes()).pixels for u in df.source_uri]
    harmonized = [decode_dicom(Path(u).read_bytes()).pixels for u in df.out_uri]
    # the derived DICOM is quantized to its bit depth: score it as written, and compare the
    # stream's in-memory score to it with the tolerance that quantization allows
    np.testing.assert_allclose(df.score_in, classifier.score(originals), atol=1e-6)
    np.testing.assert_allclose(df.score_out, classifier.score(harmonized), atol=2e-3)
    assert df.score_in.between(0, 1).all() and (df.score_s >= 0).all()
    assert df.label.notna().all()  # labels joined, so the report can compute AUCs


@pytest.mark.parametrize("executor", ["local", "stream-cpu-tasks"])
def test_a_model_changed_mid_run_turns_rows_into_errors(
    archive, histogram_model, tmp_path, executor
) -> None:
    """Both executors check the model hash the run planned with (the stream's CPU-task stage
    here; its actors load through the same function)."""
    spec = RunSpec(
        input_uri=str(archive),
        out_uri=str(tmp_path),
        method="histogram",
        model_uri=histogram_model,
        model_hash="0" * 16,
        run_id="r",
    )
    sources = sorted((archive / SOURCE).glob("*.dcm"))[:2]
    todo = [new_row(spec, str(p), "e", p.stat().st_size, SOURCE) for p in sources]
    todo.append(new_row(spec, str(archive / "labels.parquet"), "e", 1, None))  # not DICOM
    if executor == "local":
        out = list(LocalExecutor().rows(todo, spec, Storage()))
    else:
        decoded = _decode_batch(_table(todo), spec, Storage())
        harmonized = _harmonize_batch(decoded, spec, Storage())
        assert all(r["pixels"] is None for r in harmonized.to_pylist())
        out = _encode_batch(harmonized, spec, Storage()).to_pylist()
    assert [r["status"] for r in out] == ["error", "error", "error"]
    assert all("harmonize: the model at" in r["error"] for r in out[:2])
    assert all("changed during run r" in r["error"] for r in out[:2])
    assert out[2]["error"].startswith("decode: ")  # a row keeps the first reason it failed
    assert all(r["out_uri"] is None and "pixels" not in r for r in out)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_stream_worker_killed_mid_run_is_retried_and_every_image_ends_ok_once(
    archive, histogram_model, ray_session, tmp_path
) -> None:
    """SIGKILL of the Ray worker running a stage, once the run has written its first image:
    Ray retries the task, and every image still ends ``ok`` exactly once."""
    inp = tmp_path / "in" / SOURCE
    inp.mkdir(parents=True)
    for copy in range(4):
        for path in sorted((archive / SOURCE).glob("*.dcm")):
            shutil.copyfile(path, inp / f"{copy}-{path.name}")
    out = tmp_path / "out"
    killed: list[str] = []

    def kill_a_stage_worker() -> None:
        deadline = time.monotonic() + 120
        while not any((out / "images").rglob("*.dcm")) and time.monotonic() < deadline:
            time.sleep(0.01)
        while time.monotonic() < deadline and not killed:
            for proc in psutil.Process().children(recursive=True):
                try:
                    title = " ".join(proc.cmdline())
                    if title.startswith("ray::MapBatches"):
                        proc.kill()
                        killed.append(title)
                        return
                except psutil.Error:
                    continue
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_stage_worker, daemon=True)
    killer.start()
    summary = run_archive(
        archive, histogram_model, out, RayStreamExecutor(batch_size=2),
        input_uri=str(tmp_path / "in"), labels_uri=None,
    )  # fmt: skip
    killer.join(timeout=5)
    assert killed, "no Ray Data worker was found running a stage"
    assert summary.counts == {"ok": 32}
    rows = _manifest(out)
    assert len(rows) == 32 and (rows.status == "ok").all() and rows.source_uri.is_unique
