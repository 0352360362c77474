"""`harmonize demo` twice into one folder: the second run skips every object (same archive,
same models, same hashes), and the report's summary lists each method once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harmonize.experiments.demo import run_demo
from harmonize.models.registry import CLASSICAL, method_names
from harmonize.run.local import LocalExecutor


def test_a_second_demo_skips_everything_and_reports_each_method_once(tmp_path: Path) -> None:
    lines: list[str] = []
    for _ in range(2):
        lines.clear()
        report = run_demo(
            str(tmp_path), executor=LocalExecutor(), n_per_site=4, matrix=128, echo=lines.append
        )
    assert any("reusing the archive" in line for line in lines)
    for method in method_names(CLASSICAL):
        df = pd.read_parquet(tmp_path / "runs" / method / "manifest")
        assert len(df) == 4 and (df.status == "ok").all() and df.model_hash.nunique() == 1
        runs = pd.read_parquet(tmp_path / "runs" / method / "summaries").sort_values("started_at")
        assert runs[["ok", "skipped"]].values.tolist() == [[4, 0], [0, 4]]  # the second: skips
        assert set(runs.model_hash) == set(df.model_hash)
    markdown = "\n".join(lines)
    summary = markdown.split("## Summary", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("| ")]
    assert rows[:2] == ["method", "---"]
    assert rows[2:] == sorted(method_names(CLASSICAL))  # once each, in name order
    assert Path(report).is_file()
