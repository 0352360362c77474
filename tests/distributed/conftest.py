"""Fixtures of the distributed tests: a real Ray head with the Jobs API on 127.0.0.1 (its own
temp dir and ports), and how to stop exactly the processes a test started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harmonize.distributed.local_head import jobs_api_answers


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
        while not jobs_api_answers(url):
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
