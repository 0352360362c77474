"""Planning a run: one row per listed object, the output prefix never taken as input, objects
already ok for the same spec skipped (and only those), labels joined by image id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harmonize.errors import ConfigError
from harmonize.io.manifest import COLUMNS, ManifestWriter
from harmonize.io.storage import Storage
from harmonize.run.plan import new_row, new_run_id, plan, site_from_path, with_labels
from harmonize.run.spec import RunOptions, RunSpec


def _archive(tmp_path: Path, names: list[str]) -> Path:
    """Objects with those names under tmp_path/in (planning reads names, never bytes)."""
    for name in names:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
    return tmp_path / "in"


def _spec(inp: Path, out: Path, **kw: str) -> RunSpec:
    return RunSpec(str(inp), str(out), "histogram", "m", "abc", kw.pop("run_id", "r1"), **kw)


def test_site_is_the_first_folder_below_the_input_prefix() -> None:
    assert site_from_path("s3://b/in", "s3://b/in/mc-like/x/a.dcm") == "mc-like"
    assert site_from_path("s3://b/in/", "s3://b/in/a.dcm") is None
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", new_run_id())


def test_a_new_row_has_every_manifest_column_and_the_runs_identity(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "in", tmp_path / "out", classifier_uri="clf", classifier_hash="h")
    row = new_row(spec, str(tmp_path / "in/a.dcm"), "etag-1", 10, "site-a")
    assert set(row) == set(COLUMNS) and row["status"] == "ok"
    assert row["config_hash"] == spec.config_hash and row["run_id"] == "r1"
    assert (row["classifier_uri"], row["classifier_hash"]) == ("clf", "h")
    assert row["out_uri"] is None and row["error"] is None  # the stages fill those in


def test_plan_lists_every_object_but_the_output_and_respects_the_limit(tmp_path: Path) -> None:
    inp = _archive(tmp_path, ["s1/a.dcm", "s1/b.DCM", "s2/c.dcm", "notes.txt", "out/old.dcm"])
    spec = _spec(inp, inp / "out")  # OUT inside INPUT: its derived images are not input
    todo, skipped = plan(spec, Storage(), RunOptions())
    assert sorted(Path(r["source_uri"]).name for r in todo) == ["a.dcm", "b.DCM", "c.dcm"]
    assert skipped == [] and {r["site"] for r in todo} == {"s1", "s2"}
    todo, _ = plan(spec, Storage(), RunOptions(limit=2))
    assert len(todo) == 2
    todo, _ = plan(spec, Storage(), RunOptions(suffixes=()))  # every object
    assert sorted(Path(r["source_uri"]).name for r in todo)[-1] == "notes.txt"


def test_plan_refuses_an_input_with_nothing_but_the_output(tmp_path: Path) -> None:
    inp = _archive(tmp_path, ["out/old.dcm"])
    with pytest.raises(ConfigError, match="no input objects under .* apart from the output"):
        plan(_spec(inp, inp / "out"), Storage(), RunOptions())


def test_plan_skips_only_objects_ok_for_the_same_method_and_config(tmp_path: Path) -> None:
    inp = _archive(tmp_path, ["a.dcm", "b.dcm", "c.dcm"])
    out = tmp_path / "out"
    spec = _spec(inp, out)
    first, _ = plan(spec, Storage(), RunOptions())
    done = {Path(r["source_uri"]).name: r for r in first}
    done["a.dcm"].update(image_id="1.2.3", out_uri="x/a.dcm", rows=4, cols=4)
    done["b.dcm"]["status"] = "error"  # errors are retried
    other = new_row(_spec(inp, out, mode="curve"), done["c.dcm"]["source_uri"], "", 0, None)
    other.update(source_etag=done["c.dcm"]["source_etag"])  # ok, but under another config
    writer = ManifestWriter(str(out), "r1", Storage())
    writer.add([done["a.dcm"], done["b.dcm"], other])
    writer.close()
    todo, skipped = plan(_spec(inp, out, run_id="r2"), Storage(), RunOptions())
    assert sorted(Path(r["source_uri"]).name for r in todo) == ["b.dcm", "c.dcm"]
    assert skipped == [(done["a.dcm"]["source_uri"], done["a.dcm"]["source_etag"])]


def test_labels_are_joined_by_image_id() -> None:
    rows = [
        {"image_id": "1", "site": "folder", "label": None},
        {"image_id": "2", "site": "folder", "label": None},
        {"image_id": None, "site": "folder", "label": None},  # not decoded: no id
    ]
    joined = list(with_labels(rows, {"1": ("site-a", 1), "2": (None, 0)}))
    assert [(r["site"], r["label"]) for r in joined] == [
        ("site-a", 1),
        ("folder", 0),  # no site in the table: the folder's stays
        ("folder", None),
    ]
