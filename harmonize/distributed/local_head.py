"""The local Ray head harmonize owns: started on free loopback ports, found again, stopped.

``harmonize submit`` without an address sends jobs to a Ray head of harmonize's own on this
machine, never to whichever Ray listens on a default port (on a shared machine, a stranger's).
The head it starts keeps its files in its own temp dir (which identifies its processes) and is
recorded in ``state_dir()/local-ray-head.json``; ``harmonize submit shutdown`` stops exactly it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harmonize.distributed.session import RAY_ENV_DEFAULTS
from harmonize.errors import HarmonizeError

DASHBOARD_PORT = 8265  # Ray's default, for the examples in messages
HEAD_RECORD = "local-ray-head.json"  # where harmonize remembers the local head it started


def http_status(url: str, timeout: float = 10.0) -> int | None:
    """The HTTP status of ``url``/api/version, or None when nothing answers."""
    import requests

    try:
        return requests.get(f"{url}/api/version", timeout=timeout).status_code
    except requests.RequestException:
        return None


def jobs_api_answers(url: str) -> bool:
    """Whether a Ray Jobs API answers at ``url`` (a quick probe: local heads)."""
    return http_status(url, timeout=2.0) == 200


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` of 127.0.0.1."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(low: int = 20000, high: int = 29999) -> int:
    # Above Ray's default worker port range (10002-19999), like the test servers.
    start = low + secrets.randbelow(high - low)
    for port in [*range(start, high), *range(low, start)]:
        if port_free(port):
            return port
    raise HarmonizeError(f"no free port in {low}-{high} for a local Ray head")


def _ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"  # the venv's bin/ may not be on PATH
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if found is None:
        raise HarmonizeError("the `ray` command is missing; pip install 'ray[default]'")
    return found


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_local_head(
    *,
    temp_dir: str,
    dashboard_port: int | None = None,
    gcs_port: int | None = None,
    num_cpus: int | None = None,
    timeout_s: float = 90.0,
) -> str:
    """Start a Ray head on 127.0.0.1 with the dashboard (the Jobs API) and return its URL.

    Every port it listens on is a free one above Ray's worker range (none of Ray's defaults, so
    it never meets another Ray on this machine), and it keeps its files in ``temp_dir``, which
    also identifies its processes. The head outlives this process (it serves later jobs,
    `submit status`, `submit logs`); its processes inherit this environment (S3 credentials and
    endpoint).
    """
    dashboard, gcs, client, agent, agent_grpc, runtime_env_port = _free_ports(6)
    cmd = [
        _ray_executable(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port or gcs}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port or dashboard}",
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env_port}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    env = {**RAY_ENV_DEFAULTS, **os.environ}
    env.pop("RAY_ADDRESS", None)  # a head of its own, whatever this shell points at
    # Its own session: the head outlives this terminal (Ctrl-C, SIGHUP) like a daemon.
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout_s, start_new_session=True
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise HarmonizeError(
            f"could not start a local Ray head ({' / '.join(tail)}); start one with "
            f"`ray start --head` and pass its --address http://127.0.0.1:{DASHBOARD_PORT}"
        )
    url = f"http://127.0.0.1:{dashboard_port or dashboard}"
    deadline = time.monotonic() + timeout_s
    while not jobs_api_answers(url):  # the dashboard comes up a few seconds after the head
        if time.monotonic() > deadline:
            raise HarmonizeError(f"the local Ray head started, but {url} did not answer")
        time.sleep(0.5)
    return url


# -- the local head harmonize owns ---------------------------------------------------------------
def state_dir() -> Path:
    """Where harmonize keeps what outlives one command: $HARMONIZE_STATE_DIR, else
    $XDG_CACHE_HOME/harmonize, else ~/.cache/harmonize."""
    if os.environ.get("HARMONIZE_STATE_DIR"):
        return Path(os.environ["HARMONIZE_STATE_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "harmonize"


def _head_processes(temp_dir: str) -> list[Any]:
    """The running processes of the head whose files live in ``temp_dir``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if temp_dir in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
    return found


def _read_head_record() -> dict[str, str] | None:
    try:
        record = json.loads((state_dir() / HEAD_RECORD).read_text())
        return {"url": str(record["url"]), "temp_dir": str(record["temp_dir"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def owned_head() -> str | None:
    """The URL of the local head an earlier ``harmonize submit`` started, if it still runs (its
    Jobs API answers and its processes are the ones of its own temp dir); a stale record is
    dropped."""
    record = _read_head_record()
    if record is None:
        return None
    if _head_processes(record["temp_dir"]) and jobs_api_answers(record["url"]):
        return record["url"]
    (state_dir() / HEAD_RECORD).unlink(missing_ok=True)
    return None


def start_owned_head(echo: Callable[[str], Any] = print) -> str:
    """Start harmonize's local head (free ports, its own temp dir) and record it."""
    temp_dir = tempfile.mkdtemp(prefix="hray-", dir="/tmp")  # short: Ray's socket paths
    echo(f"starting a local Ray head for harmonize (127.0.0.1, files in {temp_dir})")
    url = start_local_head(temp_dir=temp_dir)
    state_dir().mkdir(parents=True, exist_ok=True)
    record = {"url": url, "temp_dir": temp_dir, "started_at": datetime.now(UTC).isoformat()}
    (state_dir() / HEAD_RECORD).write_text(json.dumps(record) + "\n")
    return url


def _wait_gone(processes: list[Any], timeout_s: float) -> list[Any]:
    """Wait up to ``timeout_s`` for ``processes`` to end (a zombie has); those still running."""
    deadline = time.monotonic() + timeout_s

    def running() -> list[Any]:
        alive = []
        for proc in processes:
            with contextlib.suppress(Exception):  # psutil.NoSuchProcess: gone
                if proc.is_running() and proc.status() != "zombie":
                    alive.append(proc)
        return alive

    while (alive := running()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def stop_owned_head(timeout_s: float = 10.0) -> str | None:
    """Stop the local head harmonize started (only its processes); returns its URL, or None
    when there was none."""
    record = _read_head_record()
    if record is None:
        return None
    processes = _head_processes(record["temp_dir"])
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    alive = _wait_gone(processes, timeout_s)
    for proc in alive:  # past the grace period: killed, and waited for (a kill is not instant)
        with contextlib.suppress(Exception):
            proc.kill()
    _wait_gone(alive, timeout_s)
    (state_dir() / HEAD_RECORD).unlink(missing_ok=True)
    shutil.rmtree(record["temp_dir"], ignore_errors=True)
    return record["url"]
