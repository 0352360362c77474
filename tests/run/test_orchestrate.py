"""A whole run as the orchestration drives it: a re-run writes no new ok rows, a bad object is an
error row and not a crash, the classifier is part of the skip key, and `harmonize run` exits
0 / 3 / 4 / 1 / 2 as its --help says (every row written before the exit)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from harmonize.errors import ConfigError
from harmonize.io.manifest import read_manifest
from harmonize.io.summaries import read_summaries
from harmonize.run.local import LocalExecutor
from harmonize.run.spec import ExitCode, RunIncomplete

from conftest import SOURCE, run_archive, run_cli


def _manifest(out: Path | str) -> pd.DataFrame:
    return read_manifest(str(out)).to_pandas()


def _rows_of(out: Path, run_id: str) -> pd.DataFrame:
    df = _manifest(out)
    return df[df.run_id == run_id]


def _cli_run(inp: Path, model: str, out: Path) -> int:
    return run_cli(
        "run", "--method", "histogram", "--model", model, "--input", str(inp), "--out", str(out),
        "--executor", "local", "--no-progress",
    )  # fmt: skip


def test_rerun_is_idempotent_and_a_bad_object_becomes_an_error_row(
    archive, histogram_model, tmp_path
) -> None:
    inp = tmp_path / "in"
    shutil.copytree(archive / SOURCE, inp / SOURCE)
    (inp / SOURCE / "broken.dcm").write_bytes(b"not a dicom file at all")
    (inp / SOURCE / "truncated.dcm").write_bytes(
        next((archive / SOURCE).glob("*.dcm")).read_bytes()[:3000]
    )
    n = len(list((inp / SOURCE).glob("*.dcm")))
    out = tmp_path / "out"
    first = run_archive(archive, histogram_model, out, input_uri=str(inp))
    assert first.total == n and first.counts["error"] == 2 and first.counts["ok"] == n - 2
    errors = _manifest(out).query("status == 'error'")
    assert sorted(Path(u).name for u in errors.source_uri) == ["broken.dcm", "truncated.dcm"]
    reasons = dict(zip((Path(u).name for u in errors.source_uri), errors.error, strict=True))
    assert reasons["broken.dcm"].startswith("decode: not a DICOM file: no 'DICM' marker")
    assert reasons["truncated.dcm"].startswith("decode: the DICOM file (3000 bytes) is truncated")
    assert not any("\n" in r or "Traceback" in r or ".py" in r for r in reasons.values())
    second = run_archive(archive, histogram_model, out, input_uri=str(inp))
    assert second.counts == {"skipped": n - 2, "error": 2}  # errors are retried, ok are not
    df = _manifest(out)
    assert len(df) == n + 2 and (df.status == "ok").sum() == n - 2  # skips: no row each
    summaries = read_summaries(str(out)).to_pandas().sort_values("started_at")
    assert summaries[["listed", "ok", "error", "skipped"]].values.tolist() == [
        [n, n - 2, 2, 0], [n, 0, 2, n - 2]
    ]  # fmt: skip
    assert summaries.listing_sha256.nunique() == 1
    by_status = (
        duckdb.connect()
        .execute(
            f"SELECT status, count(*) FROM read_parquet('{out}/manifest/*/*.parquet', "
            "hive_partitioning=true) GROUP BY status ORDER BY status"
        )
        .fetchall()
    )
    assert by_status == [("error", 4), ("ok", n - 2)]


def test_curve_mode_is_refused_for_classical_methods(archive, histogram_model, tmp_path) -> None:
    with pytest.raises(ConfigError, match='no mode "curve"'):
        run_archive(archive, histogram_model, tmp_path, mode="curve")
    assert not (tmp_path / "manifest").exists()  # refused before any row


def test_the_classifier_is_part_of_the_skip_key(
    archive: Path, histogram_model: str, classifier_model: str, tmp_path: Path
) -> None:
    run_archive(archive, histogram_model, tmp_path, run_id="1-plain")
    plain = _rows_of(tmp_path, "1-plain")
    assert len(plain) == 8 and plain.score_in.isna().all()
    run_archive(archive, histogram_model, tmp_path, classifier=classifier_model, run_id="2-scored")
    scored = _rows_of(tmp_path, "2-scored")
    assert (scored.status == "ok").all() and scored.score_in.notna().all()  # not skipped
    assert set(scored.out_uri) == set(plain.out_uri)  # same pixels, same derived files
    again = run_archive(
        archive, histogram_model, tmp_path, classifier=classifier_model, run_id="3-again"
    )
    assert again.counts == {"skipped": 8} and len(_rows_of(tmp_path, "3-again")) == 0


@pytest.mark.parametrize(
    ("bad", "good", "code"),
    [(0, 3, ExitCode.OK), (2, 2, ExitCode.SOME_ERRORS), (3, 0, ExitCode.ALL_ERRORS)],
    ids=["clean", "some-errors", "all-unreadable"],
)
def test_run_exits_with_its_code_after_writing_every_row(
    archive, histogram_model, tmp_path, capsys, bad: int, good: int, code: ExitCode
) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    for path in sorted((archive / SOURCE).glob("*.dcm"))[:good]:
        shutil.copy(path, inp / path.name)
    for index in range(bad):
        (inp / f"unreadable-{index}.dcm").write_bytes(b"\x00" * (100 + index))
    out = tmp_path / "out"
    assert _cli_run(inp, histogram_model, out) == code
    counts = ", ".join(f"{s} {n}" for s, n in (("error", bad), ("ok", good)) if n)
    assert f"{bad + good} objects ({counts})" in capsys.readouterr().err
    df = _manifest(out)
    assert len(df) == bad + good and (df.status == "error").sum() == bad  # count in = count out
    if good:  # a re-run skips what was done: still the code of the errors it retried
        assert _cli_run(inp, histogram_model, out) == (ExitCode.SOME_ERRORS if bad else 0)


def test_run_help_documents_every_exit_code(capsys) -> None:
    assert run_cli("run", "--help") == 0
    text = capsys.readouterr().out
    assert "Exit status:" in text
    for code in ExitCode:
        assert re.search(rf"^ +{int(code)}  \w", text, re.MULTILINE), code


class _Breaking(LocalExecutor):
    """Finishes ``keep`` rows, then fails like a lost cluster (``drop``: or loses a row)."""

    def __init__(self, keep: int, drop: bool = False) -> None:
        super().__init__()
        self.keep, self.drop = keep, drop

    def rows(self, todo, spec, storage) -> Iterator[dict[str, Any]]:
        finished = super().rows(todo, spec, storage)
        for _ in range(self.keep):
            yield next(finished)
        if not self.drop:
            raise RuntimeError("lost the cluster\nworker 3 died")


def test_a_run_that_cannot_finish_says_so_and_exits_1(
    archive, histogram_model, tmp_path, monkeypatch, capsys
) -> None:
    with pytest.raises(RunIncomplete, match=r"could not finish \(RuntimeError: lost the cluster\)"):
        run_archive(archive, histogram_model, tmp_path / "a", _Breaking(2))
    with pytest.raises(RunIncomplete, match="produced 2 rows for 8 objects"):
        run_archive(archive, histogram_model, tmp_path / "b", _Breaking(2, drop=True))
    import harmonize.distributed.stream

    monkeypatch.setattr(harmonize.distributed.stream, "make_executor", lambda *a, **k: _Breaking(1))
    assert _cli_run(archive / SOURCE, histogram_model, tmp_path / "c") == ExitCode.INCOMPLETE
    err = capsys.readouterr().err.strip()
    assert "could not finish" in err and "a re-run skips" in err and len(err.splitlines()) == 1
