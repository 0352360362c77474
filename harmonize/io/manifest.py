"""The run manifest: one Parquet row per input object per run, its schema, writer and readers.

Layout under a run's output prefix::

    OUT/manifest/run=<run_id>/part-<UTC start>-<writer token>-<n>.parquet   (Hive partitions)

Rows are committed as the run goes, in small parts (``ManifestWriter``: every ``part_rows``
rows or ``part_seconds`` seconds, whichever comes first), each written whole (temporary file +
rename, or one S3 PUT): a run killed at any moment loses at most the rows of its last,
uncommitted part, and its re-run redoes only what no committed row covers. Part names are
unique per writer, so a run only ever adds files (a reused ``--run-id`` appends, never
overwrites) and nightly runs never rewrite old rows. Query with
pandas (``pd.read_parquet("OUT/manifest")``), pyarrow.dataset or DuckDB
(``SELECT * FROM read_parquet('OUT/manifest/*/*.parquet', hive_partitioning=true)``).
"""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harmonize.errors import StorageError
from harmonize.io.archive import PART_ROWS, PART_SECONDS
from harmonize.io.storage import Storage, join

MANIFEST_DIR = "manifest"

STATUS_OK, STATUS_ERROR, STATUS_SKIPPED = "ok", "error", "skipped"

STAGE_SECONDS = (
    "read_s",
    "decode_s",
    "harmonize_s",
    "score_s",
    "metrics_s",
    "encode_s",
    "write_s",
)

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),  # SOPInstanceUID; null when the object could not be decoded
        ("source_uri", pa.string()),
        ("source_etag", pa.string()),
        ("source_bytes", pa.int64()),
        ("site", pa.string()),
        ("label", pa.int8()),
        ("method", pa.string()),
        ("mode", pa.string()),
        ("model_uri", pa.string()),
        ("model_hash", pa.string()),
        ("config_hash", pa.string()),
        ("code_version", pa.string()),
        ("run_id", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("transient", pa.bool_()),  # an error row: storage unreachable past the retry budget
        ("notes", pa.string()),  # why a measure of an ok row is missing (e.g. a tiny image)
        ("rows", pa.int32()),
        ("cols", pa.int32()),
        ("bits_stored", pa.int16()),
        ("photometric", pa.string()),
        ("transfer_syntax", pa.string()),
        ("decoder", pa.string()),  # what decoded the pixels: "cpu" or "nvimgcodec" (a GPU)
        ("out_uri", pa.string()),
        ("ssim", pa.float64()),
        ("truth_uri", pa.string()),  # the same patient imaged at the target site (labels table)
        ("ssim_truth", pa.float64()),  # SSIM(harmonized, truth)
        ("psnr_truth", pa.float64()),  # PSNR(harmonized, truth), dB, display range [0, 1]
        ("hist_in", pa.list_(pa.float32())),
        ("hist_out", pa.list_(pa.float32())),
        ("score_in", pa.float64()),
        ("score_out", pa.float64()),
        # QA codes of an ok row (harmonize/run/qa.py), [] when clean; null on error rows
        ("qa_flags", pa.list_(pa.string())),
        ("classifier_uri", pa.string()),  # the classifier that made score_in / score_out
        ("classifier_hash", pa.string()),
        *[(name, pa.float64()) for name in STAGE_SECONDS],
        ("processed_at", pa.timestamp("us", tz="UTC")),
    ]
)

COLUMNS = tuple(SCHEMA.names)


def empty_row() -> dict[str, Any]:
    """A row with every manifest column set to null."""
    return dict.fromkeys(COLUMNS)


def to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows (dicts, extra keys ignored, missing keys null) as a table with the manifest schema."""
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def run_prefix(out_uri: str, run_id: str) -> str:
    return join(out_uri, MANIFEST_DIR, f"run={run_id}")


def unique_stem(kind: str) -> str:
    """``kind``-<UTC time>-<random tail>: a name no other writer takes, sorting by start time
    (records are only ever added, never overwritten)."""
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as one zstd-compressed Parquet file, for a whole-object write."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


@dataclass
class ManifestWriter:
    """Commits rows as whole Parquet parts under one run's partition: a part every
    ``part_rows`` rows or, once rows are waiting, every ``part_seconds`` seconds (checked as
    rows arrive), and the rest on ``close``. A part that cannot be written (after the storage's
    retries) raises ``StorageError``; the parts committed before it stay valid."""

    out_uri: str
    run_id: str
    storage: Storage
    part_rows: int = PART_ROWS
    part_seconds: float = PART_SECONDS

    def __post_init__(self) -> None:
        self._buffer: list[dict[str, Any]] = []
        # Unique per writer and sorting by start time: parts are only ever added.
        self._name = unique_stem("part")
        self._last = time.monotonic()
        self.parts: list[str] = []  # URIs of the parts committed so far
        self.rows_written = 0

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        self._buffer.extend(rows)
        while len(self._buffer) >= self.part_rows:
            self._flush(self._buffer[: self.part_rows])
            self._buffer = self._buffer[self.part_rows :]
        if self._buffer and time.monotonic() - self._last >= self.part_seconds:
            self._flush(self._buffer)
            self._buffer = []

    def close(self) -> None:
        if self._buffer:
            self._flush(self._buffer)
            self._buffer = []

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        name = f"{self._name}-{len(self.parts):05d}.parquet"
        uri = join(run_prefix(self.out_uri, self.run_id), name)
        self.storage.write(uri, parquet_bytes(to_table(rows)))
        self.parts.append(uri)
        self.rows_written += len(rows)
        self._last = time.monotonic()


def read_manifest(
    uri: str, storage: Storage | None = None, columns: Sequence[str] | None = None
) -> pa.Table:
    """Every row of the manifest under ``uri`` (an output prefix or its manifest/ folder), with
    the ``run_id`` column (only ``columns``, when given); an empty table with the schema when
    there is none yet."""
    store = storage or Storage()
    base = uri if uri.rstrip("/").endswith(MANIFEST_DIR) else join(uri, MANIFEST_DIR)
    empty = SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
    if not store.exists(base):
        return empty
    objects = store.list(base, suffixes=(".parquet",))
    if not objects:
        return empty
    import pyarrow.dataset as pads  # here: importing it costs the command line a second

    fs, _ = store.filesystem(base)
    paths = [store.filesystem(o.uri)[1] for o in objects]
    try:
        dataset = pads.dataset(paths, schema=SCHEMA, format="parquet", filesystem=fs)
        return dataset.to_table(columns=None if columns is None else list(columns))
    except (OSError, pa.ArrowInvalid) as err:
        raise StorageError(f'cannot read the manifest under "{base}": {err}') from err


def done_objects(manifest: pa.Table, method: str, config_hash: str) -> set[tuple[str, str]]:
    """(source_uri, source_etag) of the objects already harmonized ``ok`` with this method and
    config: a re-run skips them (and counts them in its summary)."""
    if manifest.num_rows == 0:
        return set()
    keys = ["source_uri", "source_etag", "status", "method", "config_hash"]
    df = manifest.select(keys).to_pandas()
    hit = df[(df.status == STATUS_OK) & (df.method == method) & (df.config_hash == config_hash)]
    return set(zip(hit.source_uri, hit.source_etag, strict=True))
