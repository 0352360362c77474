"""Ray Jobs submission against a real Ray head started here (`ray start --head` on 127.0.0.1,
its own temp dir and ports), and the job entry points and cluster files users start from."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from harmonize.cli import main
from harmonize.distributed import jobs
from harmonize.errors import ConfigError, HarmonizeError
from harmonize.models.registry import load_model

from conftest import SOURCE, TARGET

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _free_ports(n: int) -> list[int]:
    """n free ports on 127.0.0.1 in 20000-29999 (outside Ray's worker range 10002-19999)."""
    found: list[int] = []
    for port in range(20000 + (os.getpid() * 53) % 9000, 29999):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    raise RuntimeError("no free ports")


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_session(sid: int, timeout: float = 3.0) -> None:
    """Stop every process of the session we started the head in (never `ray stop`, which would
    stop every Ray on this machine). `ray start --block` and the raylet linger after SIGTERM, so
    whatever still runs after ``timeout`` is killed."""
    procs = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(proc.pid) == sid:
                procs.append(proc)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in procs:
        if _running(proc):
            with contextlib.suppress(psutil.Error):
                proc.kill()


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray head with the dashboard (Jobs API) on 127.0.0.1; yields its http:// address."""
    temp_dir = tempfile.mkdtemp(prefix="hray-", dir="/tmp")  # short: Ray's socket paths
    gcs, dashboard, client, agent, agent_grpc, runtime_env = _free_ports(6)
    ray = Path(sys.executable).parent / "ray"
    cmd = [
        str(ray),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        "--num-cpus=2",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = open(Path(temp_dir) / "head.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while not jobs.jobs_api_answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Ray head did not start: {(Path(temp_dir) / 'head.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        _stop_session(proc.pid)
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


# -- without a cluster ---------------------------------------------------------------------------
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
    (port,) = _free_ports(1)  # nothing listens there
    for args in (
        ["submit", "status", "some-job", "--address", f"http://127.0.0.1:{port}"],
        ["submit", "report", "m", "--out", "r", "--address", f"127.0.0.1:{port}"],
        ["submit", "logs", "some-job", "--address", "ray://127.0.0.1:10001"],
    ):
        assert _cli(*args) == 2
        err = capsys.readouterr().err
        assert err.startswith("harmonize: error: ") and len(err.strip().splitlines()) == 1
        assert "cannot reach the Ray Jobs API" in err or "Ray Client address" in err


def test_submit_gpus_is_rejected_for_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("submit", "report", "m", "--out", "r", "--gpus", "1") == 2
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
    train = ["cyclegan", "--source", "s3://a/mc", "--target", "s3://a/sz", "--out", "s3://m/x"]
    assert _cli("--s3-endpoint", "http://s3:9000", "submit", "train", *train, "--gpus", "8") == 0
    assert _cli("submit", "run", "--method", "histogram", "--gpus", "4", "--no-aws-env") == 0
    assert _cli("submit", "run", "--actors", "2", "--gpus", "4") == 2
    assert submitted[0] == (
        "train",
        [*train, "--gpus", "8"],
        {"AWS_ACCESS_KEY_ID": "key", "AWS_ENDPOINT_URL": "http://s3:9000"},
    )
    assert submitted[1] == ("run", ["--method", "histogram", "--actors", "4"], {})
    printed = capsys.readouterr().out
    assert "harmonize submit logs job-1 --follow --address http://head:8265" in printed


def test_train_unit_names_a_missing_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-archive")
    code = _cli("train", "unit", "--source", missing, "--target", "b", "--out", str(tmp_path))
    assert code == 2
    err = capsys.readouterr().err
    assert f'"{missing}" is not an existing folder or file; check the path' in err


def _script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_job_scripts_help_and_dry_run() -> None:
    for name in ("train", "run", "report", "nightly"):
        done = _script(name, "--help")
        assert done.returncode == 0, done.stderr
        assert "--config" in done.stdout
    done = _script(
        "train", "--source", "a", "--target", "b", "--out", "c", "--gpus", "8", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    assert resolved["gpus"] == 8 and resolved["training"]["crop_size"] == 256
    done = _script("nightly", "--config", "/definitely/missing.yaml")
    assert done.returncode == 2 and "cannot read the job config" in done.stderr


def test_nightly_runs_each_method_then_reports_and_is_idempotent(
    archive: Path, histogram_model: str, tmp_path: Path
) -> None:
    config = tmp_path / "nightly.yaml"
    out = tmp_path / "nightly"
    config.write_text(
        yaml.safe_dump(
            {
                "archive": str(archive / SOURCE),
                "out": str(out),
                "methods": [{"method": "histogram", "model": histogram_model}],
                "run": {"executor": "local"},
            }
        )
    )
    for _night in (1, 2):
        done = _script("nightly", "--config", str(config))
        assert done.returncode == 0, done.stderr
        assert (out / "report" / "report.html").is_file()
    rows = pd.read_parquet(out / "runs" / "histogram" / "manifest")
    by_run = rows.groupby("run_id")["status"].agg(lambda s: sorted(set(s)))
    assert sorted(map(tuple, by_run)) == [("ok",), ("skipped",)]  # night 2 redid nothing
    assert (rows["status"] == "ok").sum() == 8


def test_example_configs_load() -> None:
    from harmonize.training import load_train_config

    config = load_train_config(str(REPO / "jobs" / "configs" / "cyclegan.yaml"))
    assert (config.method, config.crop_size, config.load_size) == ("cyclegan", 256, 286)
    nightly = yaml.safe_load((REPO / "jobs" / "configs" / "nightly.yaml").read_text())
    assert {"archive", "out", "methods"} <= set(nightly)
    assert all({"method", "model"} <= set(m) for m in nightly["methods"])


@pytest.mark.parametrize(
    "path",
    [
        "cluster/ray-cluster.yaml",
        "cluster/kuberay/raycluster.yaml",
        "cluster/kuberay/rayjob-train.yaml",
        "cluster/kuberay/cronjob-nightly.yaml",
    ],
)
def test_cluster_files_are_valid_yaml(path: str) -> None:
    docs = [d for d in yaml.safe_load_all((REPO / path).read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)
    if path.startswith("cluster/kuberay/"):
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc)
            assert "spec" in doc or doc["kind"] == "ConfigMap"
            if doc["kind"] == "ConfigMap":  # the nightly job's config, shipped to the head
                nightly = yaml.safe_load(doc["data"]["nightly.yaml"])
                assert {"archive", "out", "methods"} <= set(nightly)
    else:
        assert {"cluster_name", "provider", "available_node_types", "head_node_type"} <= set(
            docs[0]
        )
    assert "harmonize" in (REPO / path).read_text()


def test_dockerfile_installs_harmonize() -> None:
    text = (REPO / "cluster" / "Dockerfile").read_text()
    assert "FROM python:3.11" in text and "pip install" in text and "harmonize" in text


# -- against a real Ray head ---------------------------------------------------------------------
@pytest.mark.slow
def test_submit_follow_to_success_writes_the_model(
    ray_head: str, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    args = ["train", "histogram", "--target", str(archive / TARGET), "--out", str(out)]
    code = _cli("submit", *args, "--no-progress", "--address", ray_head, "--follow")
    printed = capsys.readouterr().out
    assert code == 0, printed
    job_id = printed.split("submitted job ", 1)[1].split()[0]
    assert f"harmonize submit stop {job_id} --address {ray_head}" in printed
    assert "fitted histogram on 8 target images" in printed  # the job's own output, streamed
    assert f"job {job_id} SUCCEEDED" in printed
    assert load_model(str(out), expected_method="histogram").card["n_images"] == 8

    assert _cli("submit", "status", job_id, "--address", ray_head) == 0
    assert f"{job_id}: SUCCEEDED" in capsys.readouterr().out
    assert _cli("submit", "logs", job_id, "--address", ray_head) == 0
    assert "fitted histogram on 8 target images" in capsys.readouterr().out
    assert _cli("submit", "stop", job_id, "--address", ray_head) == 0
    assert "had already finished: SUCCEEDED" in capsys.readouterr().out


@pytest.mark.slow
def test_failed_job_exits_1_with_its_reason(
    ray_head: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-archive"
    code = _cli(
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
def test_without_an_address_jobs_go_to_the_local_head(
    ray_head: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(jobs, "LOCAL_DASHBOARD", ray_head)  # "the head on 127.0.0.1:8265"
    sub = jobs.submit_job("report", ["--help"], address=None, echo=print)
    assert (sub.address, sub.started_local_head) == (ray_head, False)
    assert jobs.follow_job(sub.job_id, None, echo=print) == "SUCCEEDED"
    assert "Tables and figures from one or more run manifests" in capsys.readouterr().out


@pytest.mark.slow
def test_working_dir_ships_the_local_package(
    ray_head: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = tmp_path / "checkout"
    shutil.copytree(
        REPO / "harmonize", shipped / "harmonize", ignore=shutil.ignore_patterns("__pycache__")
    )
    cli = shipped / "harmonize" / "cli.py"
    cli.write_text(cli.read_text().replace("Tables and figures from", "SHIPPED COPY: tables from"))
    (shipped / ".venv").mkdir()  # excluded from the upload
    (shipped / ".venv" / "big.bin").write_bytes(b"x" * 2**20)
    code = _cli(
        "submit", "report", "--address", ray_head, "--working-dir", str(shipped), "--follow",
        "--", "--help",  # after --, even --help goes to the job's command
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "SHIPPED COPY: tables from" in printed  # the job ran the shipped package


@pytest.mark.slow
def test_start_local_head() -> None:
    temp_dir = tempfile.mkdtemp(prefix="hray-", dir="/tmp")
    dashboard, gcs = _free_ports(2)
    try:
        url = jobs.start_local_head(
            dashboard_port=dashboard, gcs_port=gcs, temp_dir=temp_dir, num_cpus=1
        )
        assert url == f"http://127.0.0.1:{dashboard}"
        assert jobs.connect(url).list_jobs() == []
    finally:  # the head runs in its own session: stop exactly that session's processes
        sids = set()
        for proc in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if temp_dir in " ".join(proc.cmdline()):
                    sids.add(os.getsid(proc.pid))
        for sid in sids - {os.getsid(0)}:
            _stop_session(sid)
        shutil.rmtree(temp_dir, ignore_errors=True)
