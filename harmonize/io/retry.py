"""Retries of storage operations: which failures are transient, and the back-off that waits them
out within a budget.

A nightly run must not turn a five-second S3 or PACS hiccup into error rows. `with_retries` calls
an operation again after a transient failure (connection refused or reset, timeouts, HTTP 5xx,
throttling, from pyarrow, boto3 or requests/urllib3: ``is_transient``), waiting exponentially
longer each time (0.25 s doubling up to 8 s, each wait drawn uniformly from [half, all] of it:
"equal jitter", so that many workers hit by one outage do not come back in step), until the
operation's budget of seconds is spent; then it raises a `StorageError` with ``transient=True``
that says so. Anything else (a missing object, denied access, a bad bucket name) fails at once.

Example::

    data = with_retries(lambda: fs.open_input_stream(path).read(), "read", uri, budget=30.0)
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

from harmonize.errors import StorageError

T = TypeVar("T")

#: How long one storage operation waits out transient failures by default (a restart of an S3
#: gateway takes seconds; an outage longer than this becomes transient error rows). Here, in a
#: module without heavy imports, so that the CLI's --help can show it.
DEFAULT_RETRY_SECONDS = 30.0
FIRST_WAIT_S = 0.25
MAX_WAIT_S = 8.0
#: Lower-cased fragments of the messages of transient failures: pyarrow's S3 errors (AWS SDK for
#: C++ / curl) and the HTTP status texts of throttling and server errors.
_TRANSIENT_TEXT = (
    "network_connection",
    "curlcode",
    "couldn't connect",
    "could not connect",
    "connection refused",
    "connection reset",
    "connection aborted",
    "connection closed",
    "broken pipe",
    "timed out",
    "request timeout",
    "service unavailable",
    "slow down",
    "slow_down",
    "slowdown",
    "throttl",
    "service_unavailable",
    "serviceunavailable",
    "internal_failure",
    "internalerror",
    "internal error",
    "http response code: 5",
    "response code 5",
    "temporarily unavailable",
)
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
}
_URL_IN_MESSAGE = re.compile(r" ?(?:for|with) url: \S+")
#: HTTP statuses worth retrying besides 5xx: request timeout, too many requests.
_TRANSIENT_HTTP = {408, 429}


def is_transient(err: BaseException, uri: str = "") -> bool:
    """Whether ``err`` (from pyarrow, boto3, requests or the OS) is worth retrying: the storage was
    unreachable, slow or overloaded, not wrong about the request. (``uri``: the object's, left
    out of the message before it is read, so that a key named "timed out" stays a key.)"""
    if isinstance(err, StorageError):
        return err.transient
    if isinstance(err, FileNotFoundError | PermissionError | IsADirectoryError):
        return False
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    http = _http_transient(err)
    if http is not None:
        return http
    from botocore.exceptions import ClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(err, BotoConnectionError):
        return True
    if isinstance(err, ClientError):
        response = getattr(err, "response", {}) or {}
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    if isinstance(err, OSError):
        text = str(err).lower()
        if uri:
            text = text.replace(uri.lower(), "").replace(uri.lower().removeprefix("s3://"), "")
        return any(fragment in text for fragment in _TRANSIENT_TEXT)
    return False


def _http_transient(err: BaseException) -> bool | None:
    """Whether a requests / urllib3 error (DICOMweb) is transient; None for other errors.
    Unreachable, reset, timed out or a 5xx / 408 / 429 answer: yes; a TLS failure or any other
    HTTP status (401, 403, 404, ...): no."""
    import requests
    import urllib3.exceptions as u3

    if isinstance(err, requests.exceptions.SSLError | u3.SSLError):
        return False
    if isinstance(err, requests.exceptions.HTTPError):
        status = err.response.status_code if err.response is not None else 0
        return status >= 500 or status in _TRANSIENT_HTTP
    if isinstance(
        err,
        requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | requests.exceptions.ChunkedEncodingError
        | u3.ProtocolError
        | u3.TimeoutError
        | u3.NewConnectionError,
    ):
        return True
    if isinstance(err, u3.MaxRetryError):
        return err.reason is not None and is_transient(err.reason)
    if isinstance(err, requests.exceptions.RequestException | u3.HTTPError):
        return False
    return None


def with_retries(
    operation: Callable[[], T],
    what: str,
    uri: str,
    *,
    budget: float,
    hint: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``operation()``, retried after transient failures until ``budget`` seconds have passed
    since the first attempt (``budget`` 0: one attempt).

    Raises:
        StorageError: the operation failed for good (``transient`` False) or stayed unreachable
            for the whole budget (``transient`` True); the message names ``what`` and ``uri``
            (and ends with ``hint``, what to check, for a failure for good).
    """
    start = time.monotonic()
    attempts, wait = 0, FIRST_WAIT_S
    while True:
        attempts += 1
        try:
            return operation()
        except Exception as err:
            if not is_transient(err, uri):
                if isinstance(err, StorageError):
                    raise
                raise StorageError(f'cannot {what} "{uri}": {_reason(err)}{hint}') from err
            left = budget - (time.monotonic() - start)
            if left <= 0:
                tries = f"{attempts} attempt{'s' * (attempts != 1)}"
                raise StorageError(
                    f'cannot {what} "{uri}": the storage stayed unreachable for {budget:g} s '
                    f"({tries}; last: {_reason(err)}); a transient fault: a re-run retries it",
                    transient=True,
                ) from err
            pause = min(left, random.uniform(wait / 2, wait))
            sleep(pause)
            wait = min(MAX_WAIT_S, wait * 2)


def _reason(err: BaseException) -> str:
    # requests repeats the URL the message already names ("... for url: http://...").
    text = _URL_IN_MESSAGE.sub("", " ".join(str(err).split())) or type(err).__name__
    return text if len(text) <= 300 else text[:299] + "…"
