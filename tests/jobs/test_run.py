"""jobs/run.py exits with the worst of its runs' `harmonize run` codes, after every run ran."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import SOURCE

REPO = Path(__file__).resolve().parents[2]


def test_the_run_job_exits_with_the_worst_of_its_runs(
    archive: Path, histogram_model: str, tmp_path: Path
) -> None:
    inp = tmp_path / "in"
    shutil.copytree(archive / SOURCE, inp)
    (inp / "unreadable.dcm").write_bytes(b"\x00" * 100)
    good = {"name": "histogram", "method": "histogram", "model": histogram_model}
    missing = {"name": "nyul", "method": "nyul", "model": str(tmp_path / "no-model")}
    for methods, code, unclean in (
        ([good], 3, "histogram 3"),
        ([good, missing], 2, "histogram 3, nyul 2"),
    ):
        config = tmp_path / "job.yaml"
        job = {"archive": str(inp), "out": str(tmp_path / f"out-{code}"), "methods": methods}
        config.write_text(yaml.safe_dump({**job, "run": {"executor": "local"}}))
        done = subprocess.run(
            [sys.executable, str(REPO / "jobs" / "run.py"), "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, done.stdout + done.stderr
        assert f"(name, exit code): {unclean}" in done.stdout
        assert "histogram: run " in done.stdout  # the good run ran, whatever came after
