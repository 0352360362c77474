"""A real Ray head on 127.0.0.1 for tests (its own temp dir and free ports, optionally with the
dashboard's Jobs API), and how to stop exactly the processes it started (never `ray stop`, which
would stop every Ray on this machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from harmonize.distributed.local_head import jobs_api_answers

from s3server import free_ports


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_session(sid: int, timeout: float = 3.0) -> None:
    """Stop every process of the session ``sid``. `ray start --block` and the raylet linger
    after SIGTERM, so whatever still runs after ``timeout`` is killed."""
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


@contextlib.contextmanager
def ray_head(dashboard: bool) -> Iterator[str]:
    """A Ray head (2 CPUs) in a session of its own; yields its address: the dashboard's
    ``http://`` URL (Jobs API) with ``dashboard``, else the GCS ``127.0.0.1:PORT``."""
    temp_dir = tempfile.mkdtemp(prefix="hray-", dir="/tmp")  # short: Ray's socket paths
    gcs, web, client, agent, agent_grpc, runtime_env = free_ports(6)
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        f"--include-dashboard={str(dashboard).lower()}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={web}",
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        "--num-cpus=2",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log_path = Path(temp_dir) / "head.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    address = f"http://127.0.0.1:{web}" if dashboard else f"127.0.0.1:{gcs}"

    def ready() -> bool:
        if dashboard:
            return jobs_api_answers(address)
        return b"Ray runtime started" in log_path.read_bytes()

    try:
        deadline = time.monotonic() + 120
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray head did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield address
    finally:
        stop_session(proc.pid)
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
