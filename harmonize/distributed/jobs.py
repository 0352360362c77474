"""Ray Jobs: send a `harmonize` command to a Ray cluster, follow it, read its logs, stop it.

A job is the same command line a user would type (``harmonize train cyclegan --source ...``), run
by the cluster as ``python -m harmonize.cli ...`` through the Jobs API of the head's dashboard
(``http://HEAD:8265``). The cluster image is expected to have harmonize installed; for dev clusters
``working_dir`` ships the local source tree instead (``.venv``, data and outputs excluded).

Without an address (and without ``RAY_API_SERVER_ADDRESS``, or an http(s) ``RAY_ADDRESS``), jobs
go to harmonize's own local Ray head: one that an earlier ``harmonize submit`` started on
127.0.0.1 (free ports, its own temp dir, recorded in ``~/.cache/harmonize/local-ray-head.json``),
else one started now. Never to whichever Ray happens to listen on a default port: on a shared
machine that may be a stranger's. The head keeps running for later jobs, ``submit status`` and
``submit logs`` until ``harmonize submit shutdown`` stops it (and nothing else). A job on a head
on this machine runs in the caller's folder with the caller's Python, so relative paths and the
active virtual environment work as they do for the command run directly.

Example::

    sub = submit_job("train", ["cyclegan", "--source", "s3://a/mc", ...], address=None, gpus=0)
    final = follow_job(sub.job_id, sub.address, echo=print)   # "SUCCEEDED", "FAILED", ...
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harmonize.distributed.local_head import (
    http_status,
    owned_head,
    start_owned_head,
)
from harmonize.distributed.session import RAY_ENV_DEFAULTS
from harmonize.errors import ConfigError, HarmonizeError

SUBMITTABLE = ("train", "run", "report")
DASHBOARD_PORT = 8265  # Ray's default, for the examples in messages
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_WAIT_S = 60.0  # how long a submission waits for a new head's job agent to come up
# Forwarded into a job's environment when set here: where S3 is, no secret. (A job's
# runtime_env is shown by the dashboard and `ray job` to anyone who can reach them.)
AWS_SETTINGS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
# Forwarded only when asked (`submit --pass-aws-credentials`): the cluster's own identity (an
# IAM role, a service account, its nodes' environment) is the safe way to reach S3.
AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
AWS_ENV_VARS = AWS_SETTINGS + AWS_CREDENTIALS
# Never shipped with --working-dir (Ray also honours the folder's .gitignore).
WORKING_DIR_EXCLUDES = [
    ".venv/",
    "venv/",
    ".git/",
    "data/",
    "outputs/",
    "demo-out/",
    "tests/data/",
    "**/__pycache__/",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    "*.egg-info/",
]


@dataclass(frozen=True)
class Submission:
    """A submitted job: its id, the Jobs API address it lives at, and whether a local Ray head
    had to be started for it."""

    job_id: str
    address: str
    entrypoint: str
    started_local_head: bool = False


def aws_env(credentials: bool = False) -> dict[str, str]:
    """The AWS_* settings set in this process (region, S3 endpoint), and with ``credentials``
    its keys and session token too."""
    names = AWS_ENV_VARS if credentials else AWS_SETTINGS
    return {k: os.environ[k] for k in names if os.environ.get(k)}


def _normalize(address: str) -> str:
    address = address.strip().rstrip("/")
    if address.startswith("ray://"):
        raise ConfigError(
            f'"{address}" is a Ray Client address; jobs go through the dashboard\'s Jobs API: '
            f"--address http://HEAD:{DASHBOARD_PORT}"
        )
    return address if "://" in address else f"http://{address}"


def env_address() -> str | None:
    """The Jobs API address from the environment, as Ray's own `ray job` CLI reads it
    (RAY_API_SERVER_ADDRESS, or RAY_ADDRESS when it is an http(s) URL: inside a cluster
    RAY_ADDRESS names the GCS, not the dashboard)."""
    api = os.environ.get("RAY_API_SERVER_ADDRESS")
    if api:
        return _normalize(api)
    ray_address = os.environ.get("RAY_ADDRESS", "")
    return ray_address.rstrip("/") if ray_address.startswith(("http://", "https://")) else None


def is_loopback(address: str) -> bool:
    host = urlsplit(_normalize(address)).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def connect(address: str) -> Any:
    """A JobSubmissionClient for the Jobs API at ``address``, or a HarmonizeError saying why
    there is none."""
    for key, value in RAY_ENV_DEFAULTS.items():  # e.g. no token auth on loopback heads
        os.environ.setdefault(key, value)
    from ray.job_submission import JobSubmissionClient

    url = _normalize(address)
    hint = (
        f"pass the head's dashboard address, e.g. --address http://HEAD:{DASHBOARD_PORT}, and "
        "check that the head runs with the dashboard (ray[default])"
    )
    if http_status(url) is None:  # fail fast: the client itself waits on no timeout
        raise HarmonizeError(f'cannot reach the Ray Jobs API at "{url}"; {hint}')
    try:
        return JobSubmissionClient(url)
    except Exception as err:  # ConnectionError, RuntimeError (404, old Ray), ValueError
        raise HarmonizeError(f'cannot use the Ray Jobs API at "{url}" ({err}); {hint}') from err


def entrypoint(command: str, args: Sequence[str], *, same_machine: bool, shipped: bool) -> str:
    """The shell command a job runs: ``python -m harmonize.cli COMMAND ARGS...``.

    On a head on this machine the job runs with the caller's Python (its virtual environment),
    in the caller's folder unless a working dir is shipped (the job then runs in that copy, so
    ``-m harmonize.cli`` imports the shipped package); on a cluster, with the image's ``python``.
    """
    if command not in SUBMITTABLE:
        raise ConfigError(f'cannot submit "{command}"; choose one of {list(SUBMITTABLE)}')
    python = sys.executable if same_machine else "python"
    line = shlex.join([python, "-m", "harmonize.cli", command, *args])
    if same_machine and not shipped:
        line = f"cd {shlex.quote(os.getcwd())} && {line}"
    return line


def runtime_env(env: Mapping[str, str], working_dir: str | None) -> dict[str, Any]:
    """The job's runtime_env: environment variables, and the shipped source tree if any."""
    out: dict[str, Any] = {"env_vars": dict(env)}
    if working_dir:
        folder = Path(working_dir)
        if not (folder / "harmonize" / "__init__.py").is_file():
            raise ConfigError(
                f'--working-dir "{working_dir}" does not hold the harmonize package '
                "(expected harmonize/__init__.py in it); pass the repository root"
            )
        out["working_dir"] = str(folder.resolve())
        out["excludes"] = WORKING_DIR_EXCLUDES
    return out


def new_job_id(command: str) -> str:
    return f"harmonize-{command}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def submit_job(
    command: str,
    args: Sequence[str],
    *,
    address: str | None,
    env: Mapping[str, str] | None = None,
    working_dir: str | None = None,
    echo: Callable[[str], Any] = print,
) -> Submission:
    """Submit ``harmonize COMMAND ARGS...`` as a Ray Job; returns at once (see `follow_job`).

    Args:
        command: ``train``, ``run`` or ``report``.
        args: the command's own arguments, passed through unchanged (GPU counts included).
        address: the Jobs API (``http://HEAD:8265``); None: the environment's, else
            harmonize's own local head (started here when it does not run).
        env: environment variables for the job (e.g. `aws_env()`).
        working_dir: a local harmonize checkout to ship and run instead of the installed one.
    """
    started = False
    url = _normalize(address) if address else (env_address() or owned_head())
    if url is None:
        url = start_owned_head(echo)
        started = True
    client = connect(url)
    line = entrypoint(command, args, same_machine=is_loopback(url), shipped=working_dir is not None)
    job_id = new_job_id(command)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            client.submit_job(
                entrypoint=line,
                submission_id=job_id,
                runtime_env=runtime_env(env or {}, working_dir),
                metadata={"harmonize_command": command},
            )
            break
        except (RuntimeError, ValueError) as err:  # refused (bad runtime_env, ...) or not ready
            if "no available agent" in str(err).lower() and time.monotonic() < deadline:
                time.sleep(1.0)  # a head that just started: its job agent is not up yet
                continue
            raise HarmonizeError(f"the Ray Jobs API at {url} refused the job: {err}") from err
    return Submission(job_id, url, line, started)


def resolve(address: str | None) -> str:
    """The Jobs API address for status/logs/stop: the given one, the environment's, or the
    local head harmonize started (never starts one, never guesses a port)."""
    if address:
        return _normalize(address)
    url = env_address() or owned_head()
    if url is None:
        raise HarmonizeError(
            "no Ray head to ask: harmonize's own local head is not running; pass "
            f"--address http://HEAD:{DASHBOARD_PORT} (or set RAY_API_SERVER_ADDRESS)"
        )
    return url


def _unknown_job(url: str, job_id: str, err: Exception) -> HarmonizeError:
    return HarmonizeError(f'no job "{job_id}" at {url} ({err}); list them with `ray job list`')


def _ask(job_id: str, address: str | None, question: Callable[[Any], Any]) -> Any:
    """``question(client)`` for the Jobs API at the resolved address; an unknown job is a
    HarmonizeError that says how to list the jobs there."""
    url = resolve(address)
    try:
        return question(connect(url))
    except RuntimeError as err:
        raise _unknown_job(url, job_id, err) from err


def job_status(job_id: str, address: str | None) -> dict[str, Any]:
    """The job's status, message, entrypoint and start/end times (ms since the epoch)."""
    info = _ask(job_id, address, lambda client: client.get_job_info(job_id))
    return {
        "job_id": job_id,
        "status": str(info.status.value if hasattr(info.status, "value") else info.status),
        "message": info.message,
        "entrypoint": info.entrypoint,
        "start_time": info.start_time,
        "end_time": info.end_time,
    }


def job_logs(job_id: str, address: str | None) -> str:
    """The job's logs so far."""
    return str(_ask(job_id, address, lambda client: client.get_job_logs(job_id)))


def stop_job(job_id: str, address: str | None) -> bool:
    """Ask the cluster to stop the job; False when it had already finished."""
    return bool(_ask(job_id, address, lambda client: client.stop_job(job_id)))


def follow_job(job_id: str, address: str | None, echo: Callable[[str], Any] = print) -> str:
    """Stream the job's logs (chunks passed to ``echo``) until it ends; returns its final status
    (SUCCEEDED, FAILED or STOPPED)."""
    url = resolve(address)
    client = connect(url)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            echo(chunk)

    try:
        asyncio.run(tail())
    except RuntimeError as err:
        if "does not exist" in str(err):
            raise _unknown_job(url, job_id, err) from err
        echo(f"(log stream interrupted: {err}; waiting for the job to end)\n")
    while True:  # the stream ends with the job; the status may lag it by a moment
        status = job_status(job_id, url)["status"]
        if status in TERMINAL_STATES:
            return str(status)
        time.sleep(0.5)
