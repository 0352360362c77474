"""A run while its S3 server goes down: SeaweedFS SIGKILLed once the first image is written and
restarted a few seconds later. Retries absorb a short outage (every object ok); one longer than
the retry budget leaves transient error rows and exit code 3, and the re-run completes them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage, join
from harmonize.run.spec import ExitCode, RunSummary

from conftest import SOURCE, run_archive

COPIES = 3  # each source image under three keys: 24 objects, a few seconds of work


def _upload(s3_server, archive: Path, bucket: str) -> str:
    images = sorted((archive / SOURCE).glob("*.dcm"))
    for copy in range(COPIES):
        for path in images:
            key = f"in/{SOURCE}/{copy}-{path.name}"
            s3_server.client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    return join(f"s3://{bucket}", "in")


class Outage(threading.Thread):
    """Kills the server as soon as the run has written its first image and starts it again
    ``seconds`` later; ``down_at`` says when it went down."""

    def __init__(self, s3_server, out: Path, seconds: float) -> None:
        super().__init__(daemon=True)
        self.server, self.out, self.seconds = s3_server, out, seconds
        self.down_at: float | None = None
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not any((self.out / "images").rglob("*.dcm")) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.server.stop()
        self.down_at = time.monotonic()
        time.sleep(self.seconds)
        self.server.start()


def _run_through_outage(
    s3_server, archive, model: str, out: Path, bucket: str, *, budget: float, seconds: float
) -> tuple[RunSummary, Outage, Callable[[], RunSummary], float]:
    """A run of the uploaded archive (retry budget ``budget``) while the server is down for
    ``seconds``: its summary, the outage, a re-run and when the run ended."""
    store = Storage(endpoint_url=s3_server.endpoint_url, retry_seconds=budget)
    inp = _upload(s3_server, archive, bucket)

    def run() -> RunSummary:
        return run_archive(archive, model, out, input_uri=inp, storage=store, labels_uri=None)

    outage = Outage(s3_server, out, seconds=seconds)
    summary = run()
    ended = time.monotonic()
    outage.join()
    return summary, outage, run, ended


@pytest.mark.timeout(300)
def test_retries_absorb_a_short_outage(s3_server, archive, histogram_model, tmp_path) -> None:
    out = tmp_path / "out"
    summary, outage, _, ended = _run_through_outage(
        s3_server, archive, histogram_model, out, "short-outage", budget=60, seconds=3.0
    )
    assert outage.down_at is not None and outage.down_at < ended - 3.0  # it ran through it
    assert summary.counts == {"ok": 8 * COPIES} and summary.exit_code == ExitCode.OK
    rows = read_manifest(str(out)).to_pandas()
    assert len(rows) == 8 * COPIES and (rows.status == "ok").all()


@pytest.mark.timeout(300)
def test_an_outage_past_the_budget_leaves_transient_rows_the_rerun_completes(
    s3_server, archive, histogram_model, tmp_path
) -> None:
    out = tmp_path / "out"
    first, _, rerun, _ = _run_through_outage(
        s3_server, archive, histogram_model, out, "long-outage", budget=1.0, seconds=8.0
    )
    errors = first.counts["error"]
    assert errors >= 1 and first.counts["ok"] + errors == 8 * COPIES
    assert first.transient == errors and first.exit_code == ExitCode.SOME_ERRORS
    assert f"{errors} of the errors transient: a re-run retries them" in first.line()
    rows = read_manifest(str(out)).to_pandas()
    failed = rows[rows.status == "error"]
    assert failed.transient.all() and failed.error.str.contains("a transient fault").all()
    assert failed.error.str.startswith("read: cannot read").all()

    second = rerun()
    assert second.counts == {"ok": errors, "skipped": 8 * COPIES - errors}
    rows = read_manifest(str(out)).to_pandas()
    ok = rows[rows.status == "ok"]
    assert len(ok) == 8 * COPIES and ok.source_uri.is_unique  # each object ok exactly once
