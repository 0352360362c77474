"""Ray Jobs submission against a real Ray head started here (`ray start --head` on 127.0.0.1,
its own temp dir and ports)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest

from harmonize.distributed import jobs
from harmonize.errors import ConfigError, HarmonizeError
from harmonize.models.registry import load_model

from conftest import TARGET, run_cli

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    from harmonize.distributed.local_head import _free_port

    return _free_port()


def test_entrypoint_runs_the_same_command_line() -> None:
    args = ["histogram", "--target", "a b/c", "--out", "s3://x/y"]
    local = jobs.entrypoint("train", args, same_machine=True, shipped=False)
    assert local == (
        f"cd {shlex.quote(os.getcwd())} && "
        + shlex.join([sys.executable, "-m", "harmonize.cli", "train", *args])
    )
    remote = jobs.entrypoint("train", args, same_machine=False, shipped=False)
    assert shlex.split(remote) == ["python", "-m", "harmonize.cli", "train", *args]
    shipped = jobs.entrypoint("run", ["--help"], same_machine=True, shipped=True)
    assert shipped == f"{shlex.quote(sys.executable)} -m harmonize.cli run --help"  # no cd
    with pytest.raises(ConfigError, match="cannot submit"):
        jobs.entrypoint("synth", [], same_machine=False, shipped=False)


def test_runtime_env_ships_only_a_harmonize_checkout(tmp_path: Path) -> None:
    env = jobs.runtime_env({"AWS_REGION": "eu-west-1"}, str(REPO))
    assert env["env_vars"] == {"AWS_REGION": "eu-west-1"}
    assert env["working_dir"] == str(REPO)
    assert ".venv/" in env["excludes"] and "data/" in env["excludes"]
    assert "working_dir" not in jobs.runtime_env({}, None)
    with pytest.raises(ConfigError, match="does not hold the harmonize package"):
        jobs.runtime_env({}, str(tmp_path))


def test_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    assert jobs.is_loopback("http://127.0.0.1:8265") and jobs.is_loopback("localhost:8265")
    assert not jobs.is_loopback("http://10.0.0.5:8265")
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # a GCS address inside a cluster
    assert jobs.env_address() is None
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert jobs.env_address() == "http://head:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "head2:8265")
    assert jobs.env_address() == "http://head2:8265"
    with pytest.raises(ConfigError, match="Ray Client address"):
        jobs.connect("ray://head:10001")


def test_bad_address_exits_2_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()  # nothing listens there
    for args in (
        ["submit", "status", "some-job", "--address", f"http://127.0.0.1:{port}"],
        ["submit", "report", "m", "--out", "r", "--address", f"127.0.0.1:{port}"],
        ["submit", "logs", "some-job", "--address", "ray://127.0.0.1:10001"],
    ):
        assert run_cli(*args) == 2
        err = capsys.readouterr().err
        assert err.startswith("harmonize: error: ") and len(err.strip().splitlines()) == 1
        assert "cannot reach the Ray Jobs API" in err or "Ray Client address" in err


def test_submit_gpus_is_rejected_for_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("submit", "report", "m", "--out", "r", "--gpus", "1") == 2
    assert "report uses no GPU" in capsys.readouterr().err


def test_submit_passes_gpus_and_s3_settings_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    submitted: list[tuple[str, list[str], dict[str, str]]] = []

    def fake_submit(command: str, args: list[str], **kw: object) -> jobs.Submission:
        submitted.append((command, list(args), dict(kw["env"])))  # type: ignore[call-overload]
        return jobs.Submission("job-1", "http://head:8265", "...")

    monkeypatch.setattr(jobs, "submit_job", fake_submit)
    for key in jobs.AWS_ENV_VARS:  # the S3 test server's, when another test started it
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    train = ["cyclegan", "--source", "s3://a/mc", "--target", "s3://a/sz", "--out", "s3://m/x"]
    assert run_cli("--s3-endpoint", "http://s3:9000", "submit", "train", *train, "--gpus", "8") == 0
    assert run_cli("submit", "run", "--method", "histogram", "--gpus", "4", "--no-aws-env") == 0
    assert run_cli("submit", "run", "--actors", "2", "--gpus", "4") == 2
    assert run_cli("submit", "report", "--pass-aws-credentials") == 0
    settings = {"AWS_REGION": "eu-west-1"}
    # By default no secret travels: only where S3 is.
    assert submitted[0] == (
        "train", [*train, "--gpus", "8"], {**settings, "AWS_ENDPOINT_URL": "http://s3:9000"}
    )  # fmt: skip
    assert submitted[1] == ("run", ["--method", "histogram", "--actors", "4"], {})
    assert submitted[2][2] == {
        **settings, "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"
    }  # fmt: skip
    printed = capsys.readouterr().out
    assert "harmonize submit logs job-1 --follow --address http://head:8265" in printed
    assert run_cli("submit", "run", "--help") == 0
    assert "which the Ray dashboard and `ray job` show" in " ".join(capsys.readouterr().out.split())


# -- against a real Ray head ---------------------------------------------------------------------
@pytest.mark.slow
def test_submit_follow_to_success_writes_the_model(
    ray_head: str, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    args = ["train", "histogram", "--target", str(archive / TARGET), "--out", str(out)]
    code = run_cli("submit", *args, "--no-progress", "--address", ray_head, "--follow")
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, captured.err
    job_id = printed.split("submitted job ", 1)[1].split()[0]
    assert f"harmonize submit stop {job_id} --address {ray_head}" in printed
    assert "fitted histogram on 8 target images" in printed  # the job's own output, streamed
    assert f"job {job_id} SUCCEEDED" in printed
    assert load_model(str(out), expected_method="histogram").card["n_images"] == 8

    assert run_cli("submit", "status", job_id, "--address", ray_head) == 0
    assert f"{job_id}: SUCCEEDED" in capsys.readouterr().out
    assert run_cli("submit", "logs", job_id, "--address", ray_head) == 0
    assert "fitted histogram on 8 target images" in capsys.readouterr().out
    assert run_cli("submit", "stop", job_id, "--address", ray_head) == 0
    assert "had already finished: SUCCEEDED" in capsys.readouterr().out


@pytest.mark.slow
def test_failed_job_exits_1_with_its_reason(
    ray_head: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-archive"
    code = run_cli(
        "submit", "train", "histogram", "--target", str(missing), "--out", str(tmp_path / "m"),
        "--address", ray_head, "--follow",
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert f'"{missing}" is not an existing folder' in printed  # the job's exit-2 reason
    assert "FAILED" in printed
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_stop_a_running_job(
    ray_head: str, archive: Path, histogram_model: str, tmp_path: Path
) -> None:
    sub = jobs.submit_job(
        "run",
        ["--method", "histogram", "--model", histogram_model, "--input", str(archive),
         "--out", str(tmp_path / "run"), "--no-progress"],
        address=ray_head,
    )  # fmt: skip
    assert jobs.stop_job(sub.job_id, ray_head) is True
    deadline = time.monotonic() + 60
    while (status := jobs.job_status(sub.job_id, ray_head)["status"]) not in jobs.TERMINAL_STATES:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert status == "STOPPED"
    with pytest.raises(HarmonizeError, match="no job"):
        jobs.job_status("no-such-job", ray_head)


@pytest.mark.slow
def test_working_dir_ships_the_local_package(
    ray_head: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = tmp_path / "checkout"
    shutil.copytree(
        REPO / "harmonize", shipped / "harmonize", ignore=shutil.ignore_patterns("__pycache__")
    )
    cli = shipped / "harmonize" / "cli" / "report.py"
    cli.write_text(cli.read_text().replace("Tables and figures from", "SHIPPED COPY: tables from"))
    (shipped / ".venv").mkdir()  # excluded from the upload
    (shipped / ".venv" / "big.bin").write_bytes(b"x" * 2**20)
    code = run_cli(
        "submit", "report", "--address", ray_head, "--working-dir", str(shipped), "--follow",
        "--", "--help",  # after --, even --help goes to the job's command
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "SHIPPED COPY: tables from" in printed  # the job ran the shipped package
