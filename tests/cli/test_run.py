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
