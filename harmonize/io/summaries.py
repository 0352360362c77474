"""Run summaries: one small Parquet record per finished run, beside the manifest.

A run writes manifest rows only for the objects it processed (``ok`` or ``error``); the objects
it skipped because a committed ``ok`` row already covers them are counted here instead, so a
nightly run over an unchanged archive adds one record, not a row per object. Count in = count
out stays provable: ``listed = skipped + ok + error``, and ``listing_sha256`` (of the sorted
``uri<TAB>etag`` lines of every listed object) says exactly which objects were listed.

Layout::

    OUT/summaries/run=<run_id>/summary-<UTC finish>-<token>.parquet

Query with pandas (``pd.read_parquet("OUT/summaries")``) or DuckDB, like the manifest.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harmonize.errors import StorageError
from harmonize.io.manifest import parquet_bytes, unique_stem
from harmonize.io.storage import Storage, join

SUMMARY_DIR = "summaries"

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("method", pa.string()),
        ("mode", pa.string()),
        ("model_hash", pa.string()),
        ("config_hash", pa.string()),
        ("input_uri", pa.string()),
        ("code_version", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("seconds", pa.float64()),
        ("listed", pa.int64()),
        ("skipped", pa.int64()),  # already ok under the same config: no manifest row
        ("ok", pa.int64()),
        ("error", pa.int64()),
        ("transient", pa.int64()),  # errors whose storage stayed unreachable
        ("listing_sha256", pa.string()),
    ]
)


def listing_digest(objects: Iterable[tuple[str, str]]) -> str:
    """SHA-256 of the sorted ``uri<TAB>etag`` lines of the listed objects."""
    digest = hashlib.sha256()
    for uri, etag in sorted(objects):
        digest.update(f"{uri}\t{etag}\n".encode())
    return digest.hexdigest()


def write_summary(out_uri: str, record: dict[str, Any], storage: Storage) -> str:
    """Write one run's summary record (the ``SCHEMA`` columns) whole; returns its URI."""
    table = pa.Table.from_pylist([{c: record.get(c) for c in SCHEMA.names}], schema=SCHEMA)
    name = f"{unique_stem('summary')}.parquet"
    uri = join(out_uri, SUMMARY_DIR, f"run={record['run_id']}", name)
    storage.write(uri, parquet_bytes(table))
    return uri


def read_summaries(out_uri: str, storage: Storage | None = None) -> pa.Table:
    """Every run summary under the output prefix ``out_uri`` (empty, with the schema, when
    there is none)."""
    store = storage or Storage()
    base = join(out_uri, SUMMARY_DIR)
    if not store.exists(base):
        return SCHEMA.empty_table()
    tables = []
    for obj in store.list(base, suffixes=(".parquet",)):
        try:
            tables.append(pq.read_table(io.BytesIO(store.read(obj.uri))).cast(SCHEMA))
        except (OSError, pa.ArrowInvalid) as err:
            raise StorageError(f'cannot read the run summary "{obj.uri}": {err}') from err
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()
