"""jobs/run.py exits with the worst of its runs' `harmonize run` codes, after every run ran."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_the_job_deidentify_section_is_validated_and_reads_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(REPO / "jobs"))
    try:
        from common import load_job
    finally:
        sys.path.remove(str(REPO / "jobs"))
    from harmonize.errors import ConfigError
    from harmonize.io.storage import Storage

    config = tmp_path / "job.yaml"
    job = {"archive": "in", "out": "out", "methods": [{"method": "histogram", "model": "m"}]}
    section = {"secret_env": "JOB_DEID_SECRET", "retain_dates": "modified"}
    config.write_text(yaml.safe_dump({**job, "deidentify": section}))
    loaded = load_job(str(config), Storage())
    monkeypatch.delenv("JOB_DEID_SECRET", raising=False)
    with pytest.raises(ConfigError, match="environment variable JOB_DEID_SECRET"):
        loaded.deidentify.options()
    monkeypatch.setenv("JOB_DEID_SECRET", "the night job's secret, long enough")
    options = loaded.deidentify.options()
    assert (options.retain_dates, options.retain_device) == ("modified", False)
    assert load_job(str(REPO / "jobs" / "configs" / "nightly.yaml"), Storage()).deidentify is None
    config.write_text(yaml.safe_dump({**job, "deidentify": {**section, "secret": "x"}}))
    with pytest.raises(ConfigError, match="unknown job deidentify settings"):
        load_job(str(config), Storage())
