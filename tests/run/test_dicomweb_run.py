"""Runs over a PACS (a real Orthanc with DICOMweb): list by QIDO-RS, retrieve by WADO-RS,
harmonize, store the derived images back by STOW-RS; a second night takes only the new study;
an Orthanc killed mid-run leaves transient error rows that a re-run completes; credentials never
reach the manifest, the logs or the error rows."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pydicom
import pytest
import yaml

from harmonize.io import dicomweb
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage
from harmonize.run.local import LocalExecutor
from harmonize.run.spec import ExitCode

from conftest import SOURCE, TARGET, run_archive, run_cli

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]


def _upload_source(pacs, archive: Path) -> dict[str, str]:
    """The source site's 8 images into the PACS; {SOP Instance UID: instance URI}."""
    uris = {}
    for path in sorted((archive / SOURCE).glob("*.dcm")):
        data = path.read_bytes()
        pacs.upload(data)
        uris[pydicom.dcmread(path).SOPInstanceUID] = dicomweb.instance_uri_of(pacs.root, data)
    return uris


def _new_study(archive: Path, study_date: str) -> bytes:
    """A target-site image as a new study (new UIDs) of ``study_date``."""
    ds = pydicom.dcmread(sorted((archive / TARGET).glob("*.dcm"))[0])
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyDate = study_date
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _manifest_text(out: Path) -> str:
    return read_manifest(str(out)).to_pandas().to_csv()


def test_a_run_stores_derived_images_back_and_a_second_night_takes_only_the_new_study(
    pacs, archive, histogram_model, tmp_path
) -> None:
    sources = _upload_source(pacs, archive)
    out = tmp_path / "out"
    first = run_archive(
        archive, histogram_model, out, input_uri=pacs.root, labels_uri=None,
        store_derived=pacs.root,
    )  # fmt: skip
    assert first.counts == {"ok": 8} and first.exit_code == ExitCode.OK
    rows = read_manifest(str(out)).to_pandas()
    assert sorted(rows.source_uri) == sorted(sources.values())
    assert (rows.source_etag == rows.image_id).all() and rows.site.isna().all()
    store = Storage()
    assert all(u.startswith(pacs.root + "/studies/") for u in rows.out_uri)
    for row in rows.itertuples():
        derived = pydicom.dcmread(io.BytesIO(store.read(row.out_uri)))
        assert row.out_uri.endswith(f"/instances/{derived.SOPInstanceUID}")
        assert derived.SourceImageSequence[0].ReferencedSOPInstanceUID == row.image_id
        assert derived.SOPInstanceUID not in sources
    # QIDO finds the derived instances beside the sources; a listing leaves them out
    assert len(pacs.session.get(f"{pacs.url}/instances", timeout=10).json()) == 16
    assert [o.uri for o in store.list(pacs.root)] == sorted(sources.values())

    pacs.upload(_new_study(archive, "20300101"))
    second = run_archive(
        archive, histogram_model, out, input_uri=pacs.root, labels_uri=None,
        store_derived=pacs.root,
    )  # fmt: skip
    assert second.counts == {"ok": 1, "skipped": 8}
    rows = read_manifest(str(out)).to_pandas()
    assert len(rows) == 9 and rows.source_uri.is_unique and (rows.status == "ok").all()
    assert pacs.password not in _manifest_text(out)


def test_the_command_line_stores_into_a_pacs_and_refuses_one_as_out(
    pacs, archive, histogram_model, tmp_path, capsys
) -> None:
    _upload_source(pacs, archive)
    common = ["run", "--method", "histogram", "--model", histogram_model, "--executor", "local"]
    code = run_cli(*common, "--input", pacs.root, "--out", pacs.root, "--no-progress")
    assert code == 2
    err = capsys.readouterr().err
    assert "is a PACS, which cannot hold the manifest" in err and "--store-derived" in err
    out = tmp_path / "out"
    code = run_cli(
        *common, "--input", f"{pacs.root}?ModalitiesInStudy=CR", "--out", str(out),
        "--store-derived", pacs.root, "--limit", "2", "--no-progress",
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = read_manifest(str(out)).to_pandas()
    assert len(rows) == 2 and (rows.status == "ok").all()
    assert [Storage().exists(u) for u in rows.out_uri] == [True, True]
    assert not (out / "images").exists()  # derived images went to the PACS only
    assert pacs.password not in captured.out + captured.err + _manifest_text(out)


def test_train_histogram_takes_its_target_from_a_pacs(pacs, archive, tmp_path, capsys) -> None:
    _upload_source(pacs, archive)
    code = run_cli(
        "train", "histogram", "--target", pacs.root, "--out", str(tmp_path / "m"),
        "--workers", "1", "--no-progress",
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "on 8 target images" in captured.out + captured.err


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_the_job_with_since_days_lists_only_recent_studies(
    pacs, archive, histogram_model, tmp_path, executor: str
) -> None:
    # On Ray the objects are read and the derived image stored by Ray workers: a local Ray
    # started by the job inherits the PACS credentials from its environment, as a cluster's
    # nodes must have them in theirs.
    _upload_source(pacs, archive)  # studies of 2019-2020
    new = _new_study(archive, f"{date.today():%Y%m%d}")
    pacs.upload(new)
    config = tmp_path / "job.yaml"
    job = {
        "archive": pacs.root,
        "since_days": 2,
        "out": str(tmp_path / "out"),
        "store_derived": pacs.root,
        "methods": [{"name": "histogram", "method": "histogram", "model": histogram_model}],
        "run": {"executor": executor},
    }
    config.write_text(yaml.safe_dump(job))
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "run.py"), "--config", str(config)],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = read_manifest(str(tmp_path / "out" / "runs" / "histogram")).to_pandas()
    assert len(rows) == 1 and (rows.status == "ok").all(), rows.error.tolist()
    uid = pydicom.dcmread(io.BytesIO(new)).SOPInstanceUID
    derived = pydicom.dcmread(io.BytesIO(Storage().read(rows.out_uri[0])))  # back in the PACS
    assert rows.image_id[0] == derived.SourceImageSequence[0].ReferencedSOPInstanceUID == uid
    assert pacs.password not in done.stdout + done.stderr


class Outage(threading.Thread):
    """Kills Orthanc as soon as the run has written its first derived image."""

    def __init__(self, pacs, out: Path) -> None:
        super().__init__(daemon=True)
        self.pacs, self.out = pacs, out
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not any((self.out / "images").rglob("*.dcm")) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.pacs.stop()


def test_a_pacs_killed_mid_run_leaves_transient_rows_the_rerun_completes(
    pacs, archive, histogram_model, tmp_path
) -> None:
    _upload_source(pacs, archive)
    out = tmp_path / "out"
    store = Storage(retry_seconds=1.0)

    def run():  # batches of 2: the PACS dies while later batches are still to be read
        return run_archive(
            archive, histogram_model, out, LocalExecutor(batch_size=2), input_uri=pacs.root,
            storage=store, labels_uri=None,
        )  # fmt: skip

    outage = Outage(pacs, out)
    first = run()
    outage.join()
    errors = first.counts["error"]
    assert errors >= 1 and first.counts["ok"] + errors == 8
    assert first.transient == errors and first.exit_code == ExitCode.SOME_ERRORS
    rows = read_manifest(str(out)).to_pandas()
    failed = rows[rows.status == "error"]
    assert failed.transient.all() and failed.error.str.startswith("read: cannot read").all()
    assert failed.error.str.contains("a transient fault").all()
    assert pacs.password not in _manifest_text(out)

    pacs.start()
    second = run()
    assert second.counts == {"ok": errors, "skipped": 8 - errors}
    rows = read_manifest(str(out)).to_pandas()
    ok = rows[rows.status == "ok"]
    assert len(ok) == 8 and ok.source_uri.is_unique  # each object ok exactly once
