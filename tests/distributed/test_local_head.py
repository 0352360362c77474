"""harmonize's own local Ray head: started on free ports, found again, never a stranger's; and
the Ray a command starts without an address."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmonize.distributed import jobs
from harmonize.distributed.local_head import (
    HEAD_RECORD,
    _head_processes,
    jobs_api_answers,
    owned_head,
    state_dir,
    stop_owned_head,
)
from harmonize.distributed.session import ray_address


def test_without_an_address_a_command_owns_its_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address() == "local"  # never Ray's default: the cluster `ray start` left running
    assert ray_address("ray://head:10001") == "ray://head:10001"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # inside a Ray Job, or set by the user
    assert ray_address() is None  # Ray reads RAY_ADDRESS itself


def test_state_dir_and_a_stale_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARMONIZE_STATE_DIR", str(tmp_path / "state"))
    assert state_dir() == tmp_path / "state"
    monkeypatch.delenv("HARMONIZE_STATE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert state_dir() == tmp_path / "cache" / "harmonize"
    state_dir().mkdir(parents=True)
    record = {"url": "http://127.0.0.1:1", "temp_dir": str(tmp_path / "gone")}
    (state_dir() / HEAD_RECORD).write_text(json.dumps(record))
    assert owned_head() is None  # nothing of it runs: the record is dropped
    assert not (state_dir() / HEAD_RECORD).exists()
    assert stop_owned_head() is None


@pytest.mark.slow
def test_without_an_address_jobs_go_to_harmonize_own_head_never_another(
    ray_head: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stranger's head runs (the fixture); submit without an address starts a head of its
    own, reuses it for the next job and for status, and shutdown stops exactly that head."""
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("HARMONIZE_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(Exception, match="no Ray head to ask"):
        jobs.resolve(None)
    first = jobs.submit_job("report", ["--help"], address=None, echo=print)
    try:
        assert first.started_local_head and first.address != ray_head
        assert jobs.follow_job(first.job_id, None, echo=print) == "SUCCEEDED"
        assert "Tables and figures from one or more run manifests" in capsys.readouterr().out
        second = jobs.submit_job("report", ["--help"], address=None, echo=print)
        assert (second.address, second.started_local_head) == (first.address, False)
        assert jobs.job_status(first.job_id, None)["status"] == "SUCCEEDED"
        record = json.loads((tmp_path / "state" / HEAD_RECORD).read_text())
        assert _head_processes(record["temp_dir"])
    finally:
        assert stop_owned_head() == first.address
    assert not _head_processes(record["temp_dir"])
    assert owned_head() is None
    assert jobs_api_answers(ray_head)  # the stranger's head was left alone
