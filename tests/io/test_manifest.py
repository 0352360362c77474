"""The manifest: schema, whole-file writes per run, reading back with pandas and DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pandas as pd

from harmonize.io.manifest import COLUMNS, ManifestWriter, done_objects, empty_row, read_manifest
from harmonize.io.storage import Storage


def _row(i: int, status: str = "ok", config: str = "c1") -> dict:
    row = empty_row()
    row.update(
        image_id=f"1.2.{i}",
        source_uri=f"/a/{i}.dcm",
        source_etag=f"e{i}",
        status=status,
        method="histogram",
        config_hash=config,
        ssim=0.9,
        hist_in=[0.5, 0.5],
        hist_out=[0.25, 0.75],
        label=i % 2,
        processed_at=datetime.now(UTC),
    )
    return row


def test_rows_are_committed_in_whole_parts_by_count_and_by_time(tmp_path) -> None:
    store = Storage()
    writer = ManifestWriter(str(tmp_path), "run-1", store, part_rows=4, part_seconds=3600)
    writer.add([_row(i) for i in range(6)])
    assert writer.rows_written == 4  # one full part so far
    writer.part_seconds = 0.0  # as if the part's seconds had passed: the waiting rows go
    writer.add([_row(6, "error")])
    assert writer.rows_written == 7 and len(writer.parts) == 2
    writer.close()
    files = sorted(p.name for p in (tmp_path / "manifest" / "run=run-1").iterdir())
    assert [f.rsplit("-", 1)[1] for f in files] == ["00000.parquet", "00001.parquet"]
    table = read_manifest(str(tmp_path), store)
    assert table.num_rows == 7 and tuple(table.schema.names) == COLUMNS


def test_a_reused_run_id_adds_parts_and_never_overwrites(tmp_path) -> None:
    store = Storage()
    for start in (0, 10):
        writer = ManifestWriter(str(tmp_path), "same-id", store)
        writer.add([_row(i) for i in range(start, start + 3)])
        writer.close()
    assert len(list((tmp_path / "manifest" / "run=same-id").iterdir())) == 2
    assert read_manifest(str(tmp_path), store).num_rows == 6


def test_readable_with_pandas_and_duckdb(tmp_path) -> None:
    for run in ("r1", "r2"):
        writer = ManifestWriter(str(tmp_path), run, Storage())
        writer.add([_row(i) for i in range(3)])
        writer.close()
    df = pd.read_parquet(tmp_path / "manifest")
    assert len(df) == 6 and set(df["run"].astype(str)) == {"r1", "r2"}
    con = duckdb.connect()
    n_ok, mean_ssim = con.execute(
        f"SELECT count(*), avg(ssim) FROM read_parquet('{tmp_path}/manifest/*/*.parquet', "
        "hive_partitioning=true) WHERE status = 'ok'"
    ).fetchone()
    assert n_ok == 6 and abs(mean_ssim - 0.9) < 1e-12


def test_done_objects_match_method_config_and_status(tmp_path) -> None:
    writer = ManifestWriter(str(tmp_path), "r", Storage())
    writer.add([_row(0), _row(1, "error"), _row(2, config="c2")])
    writer.close()
    done = done_objects(read_manifest(str(tmp_path)), "histogram", "c1")
    assert done == {("/a/0.dcm", "e0")}
    assert done_objects(read_manifest(str(tmp_path / "nothing-here")), "histogram", "c1") == set()
    narrow = read_manifest(str(tmp_path), columns=("source_uri", "status"))
    assert narrow.column_names == ["source_uri", "status"] and narrow.num_rows == 3


def test_qa_flags_are_a_list_column_empty_when_clean_and_null_on_error(tmp_path) -> None:
    rows = [_row(0), _row(1), _row(2, "error")]
    rows[0]["qa_flags"], rows[1]["qa_flags"] = [], ["inverted", "low_ssim"]
    writer = ManifestWriter(str(tmp_path), "r", Storage())
    writer.add(rows)
    writer.close()
    df = read_manifest(str(tmp_path)).to_pandas().sort_values("image_id")
    assert [None if f is None else list(f) for f in df.qa_flags] == [
        [],
        ["inverted", "low_ssim"],
        None,
    ]
    flagged = (
        duckdb.connect()
        .execute(
            f"SELECT image_id FROM read_parquet('{tmp_path}/manifest/*/*.parquet') "
            "WHERE list_contains(qa_flags, 'inverted')"
        )
        .fetchall()
    )
    assert flagged == [("1.2.1",)]
