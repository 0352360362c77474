"""`harmonize report`: Markdown on stdout, the HTML page and figures in --out (relative paths
taken from the working folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_cli


def test_report_of_a_run_with_relative_paths(
    local_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert run_cli("report", os.path.relpath(local_run), "--out", "report") == 0
    captured = capsys.readouterr()
    assert "| histogram | 8 | 0 |" in captured.out
    assert captured.err.strip() == f"report: {tmp_path / 'report' / 'report.html'}"
    assert (tmp_path / "report" / "report.html").is_file()
