"""Storage retries: which failures count as transient, the back-off within its budget, and a
real S3 server (SeaweedFS) killed and restarted under a read."""

from __future__ import annotations

import pickle
import threading
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from harmonize.errors import StorageError
from harmonize.io.retry import FIRST_WAIT_S, MAX_WAIT_S, is_transient, with_retries
from harmonize.io.storage import Storage, join

PYARROW_DOWN = (
    "When reading information for key 'a/x.dcm' in bucket 'b': AWS Error NETWORK_CONNECTION "
    "during HeadObject operation: curlCode: 7, Could not connect to server"
)


def _client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("err", "transient"),
    [
        (OSError(PYARROW_DOWN), True),
        (OSError("AWS Error SLOW_DOWN during PutObject operation: Please reduce your rate"), True),
        (OSError("AWS Error INTERNAL_FAILURE during GetObject operation"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (_client_error(503, "SlowDown"), True),
        (_client_error(500, "InternalError"), True),
        (_client_error(400, "Throttling"), True),
        (_client_error(404, "NoSuchKey"), False),
        (_client_error(403, "AccessDenied"), False),
        (OSError("AWS Error ACCESS_DENIED during HeadObject operation"), False),
        (FileNotFoundError("s3://b/timed out.dcm"), False),
        (OSError('Path does not exist "b/connection refused.dcm"'), False),  # the key, not a fault
        (ValueError("bad"), False),
        (StorageError("x", transient=True), True),
        (StorageError("x"), False),
    ],
)
def test_what_counts_as_transient(err: BaseException, transient: bool) -> None:
    assert is_transient(err, "s3://b/connection refused.dcm") is transient


def test_backoff_doubles_with_jitter_and_stops_when_it_succeeds() -> None:
    waits: list[float] = []
    failures = iter([OSError(PYARROW_DOWN)] * 6)

    def operation() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "done"

    assert with_retries(operation, "read", "s3://b/a", budget=600, sleep=waits.append) == "done"
    assert len(waits) == 6
    for k, wait in enumerate(waits):
        nominal = min(MAX_WAIT_S, FIRST_WAIT_S * 2**k)
        assert nominal / 2 <= wait <= nominal


def test_a_spent_budget_says_transient_and_a_hard_failure_fails_at_once() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        time.sleep(0.05)
        raise OSError(PYARROW_DOWN)

    with pytest.raises(StorageError, match=r"stayed unreachable for 0.3 s \(\d+ attempts") as info:
        with_retries(down, "read", "s3://b/a", budget=0.3)
    assert info.value.transient and len(calls) >= 2
    # The flag survives a trip through pickle (a Ray worker's exception reaching the driver).
    assert pickle.loads(pickle.dumps(info.value)).transient

    def missing() -> None:
        calls.append(1)
        raise FileNotFoundError("no such object")

    calls.clear()
    with pytest.raises(
        StorageError, match='cannot write "s3://b/a": no such object. Check'
    ) as hard:
        with_retries(missing, "write", "s3://b/a", budget=60, hint=". Check it")
    assert not hard.value.transient and len(calls) == 1


@pytest.mark.timeout(120)
def test_a_read_waits_out_a_killed_and_restarted_s3_server(s3_server) -> None:
    """SeaweedFS SIGKILLed under a read: with budget the read returns once the server is back;
    with a short budget it fails, transient. The server is up again at the end either way."""
    store = Storage(endpoint_url=s3_server.endpoint_url)
    uri = join(s3_server.create_bucket("outage"), "a", "x.dcm")
    store.write(uri, b"payload")
    s3_server.stop()
    restarted = threading.Timer(2.0, s3_server.start)
    try:
        restarted.start()
        began = time.monotonic()
        assert store.read(uri) == b"payload"
        assert time.monotonic() - began >= 2.0
        restarted.join()

        s3_server.stop()
        with pytest.raises(StorageError, match="stayed unreachable for 0.5 s") as info:
            Storage(endpoint_url=s3_server.endpoint_url, retry_seconds=0.5).read(uri)
        assert info.value.transient
    finally:
        restarted.join()
        if s3_server.proc.poll() is not None:
            s3_server.start()
    assert store.read(uri) == b"payload"
