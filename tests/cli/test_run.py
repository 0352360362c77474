"""`harmonize run`: its choices come from the registry, and relative paths work on every
executor (they are made absolute before any worker sees them). Its exit codes are tested with
the orchestration (tests/run/test_orchestrate.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harmonize.io.manifest import read_manifest
from harmonize.models.registry import METHODS, method_names

from conftest import SOURCE, run_cli


def test_help_lists_the_registered_methods_and_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("run", "--help") == 0
    text = capsys.readouterr().out
    assert f"--method [{'|'.join(method_names())}]" in text
    modes = list(dict.fromkeys(m for entry in METHODS.values() for m in entry.modes))
    assert f"--mode [{'|'.join(modes)}]" in text


def test_a_neural_method_runs_in_curve_mode_unless_told(
    archive: Path, cyclegan_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for mode in (None, "direct"):
        code = run_cli(
            "run", "--method", "cyclegan", "--model", cyclegan_model, "--input",
            str(archive / SOURCE), "--out", str(tmp_path), "--executor", "local", "--limit", "2",
            "--no-progress", *(["--mode", mode] if mode else []),
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err
    df = read_manifest(str(tmp_path)).to_pandas()
    assert sorted(df["mode"]) == ["curve", "curve", "direct", "direct"]
    assert (df.status == "ok").all()


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_relative_paths_work_on_every_executor(
    executor: str,
    archive: Path,
    histogram_model: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    if executor == "ray":
        request.getfixturevalue("ray_session")
    monkeypatch.chdir(tmp_path)
    code = run_cli(
        "run", "--method", "histogram", "--model", os.path.relpath(histogram_model),
        "--input", os.path.relpath(archive / SOURCE), "--out", "runs/histogram",
        "--labels", os.path.relpath(archive / "labels.parquet"),
        "--executor", executor, "--no-progress",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    df = read_manifest(str(tmp_path / "runs" / "histogram")).to_pandas()
    assert len(df) == 8 and (df.status == "ok").all() and df.label.notna().all()
    assert all(Path(uri).is_relative_to(tmp_path / "runs" / "histogram") for uri in df.out_uri)
    assert all(Path(uri).is_file() for uri in df.out_uri)


def test_deidentify_needs_a_secret(
    archive: Path, histogram_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("MY_DEID_SECRET", raising=False)
    base = ["run", "--method", "histogram", "--model", histogram_model, "--input",
            str(archive / SOURCE), "--out", str(tmp_path / "o"), "--executor", "local"]  # fmt: skip
    assert run_cli(*base, "--deidentify", "--deid-secret-env", "MY_DEID_SECRET") == 2
    assert "--deidentify needs a secret in the environment variable MY_DEID_SECRET" in (
        capsys.readouterr().err
    )
    assert run_cli(*base, "--retain-dates", "modified") == 2
    assert "need --deidentify" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    from harmonize.cli.run import RETAIN_DATES
    from harmonize.dicom.deidentify import RETAIN_DATES as LIBRARY_RETAIN_DATES

    assert RETAIN_DATES == LIBRARY_RETAIN_DATES


def test_deidentified_run_writes_only_pseudonymous_identifiers(
    archive: Path, histogram_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import pydicom

    from harmonize.dicom.deidentify import DeidentifyOptions, pseudonymous_uid

    secret = "a secret of the night job, 32 chars"
    monkeypatch.setenv("HARMONIZE_DEID_SECRET", secret)
    out = tmp_path / "runs" / "deid"

    def run(*extra: str) -> int:
        return run_cli(
            "run", "--method", "histogram", "--model", histogram_model,
            "--input", str(archive / SOURCE), "--out", str(out),
            "--labels", str(archive / "labels.parquet"), "--executor", "local", "--no-progress",
            "--deidentify", "--retain-dates", "modified", *extra,
        )  # fmt: skip

    assert run() == 0, capsys.readouterr().err
    df = read_manifest(str(out)).to_pandas()
    sources = {
        pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID: path
        for path in (archive / SOURCE).rglob("*.dcm")
    }
    options = DeidentifyOptions(secret, retain_dates="modified")
    assert sorted(df.image_id) == sorted(pseudonymous_uid(uid, options) for uid in sources)
    assert df.label.notna().all()  # the labels table (original UIDs) still joins
    for image_id, out_uri in zip(df.image_id, df.out_uri, strict=True):
        derived = pydicom.dcmread(out_uri, stop_before_pixels=True)
        assert derived.SourceImageSequence[0].ReferencedSOPInstanceUID == image_id
        assert derived.PatientIdentityRemoved == "YES"
        # named by its own pseudonymous UIDs: no folder or file name of the archive goes along
        uids = (derived.StudyInstanceUID, derived.SeriesInstanceUID, derived.SOPInstanceUID)
        assert Path(out_uri).parts[-3:] == (*uids[:2], f"{uids[2]}.dcm")
        assert not any(Path(p).stem in out_uri for p in sources.values())
    assert not set(df.image_id) & set(sources)
    # the same secret again: every object skipped; another secret: processed again
    assert run() == 0 and len(read_manifest(str(out)).to_pandas()) == len(df)
    monkeypatch.setenv("HARMONIZE_DEID_SECRET", "another secret, another pseudonym set")
    assert run() == 0
    again = read_manifest(str(out)).to_pandas()
    new = again[~again.run_id.isin(set(df.run_id))]
    assert len(new) == len(df) and not set(new.image_id) & set(df.image_id)
