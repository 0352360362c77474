"""The one labels reader: Parquet or CSV (any case), 0/1/empty labels, duplicates, folders."""

from __future__ import annotations

import pandas as pd
import pytest

from harmonize.errors import ConfigError
from harmonize.io.labels import (
    finding_labels,
    labels_frame,
    read_labels,
    site_and_label,
    write_labels,
)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["image_id", "site", "label"])


@pytest.mark.parametrize("name", ["labels.parquet", "labels.csv", "LABELS.CSV", "Labels.Parquet"])
def test_parquet_and_csv_of_any_case_read_the_same(tmp_path, name) -> None:
    rows = _frame([("1.2.10", "a", 1), ("1.2.9", "b", 0), ("007", None, None)])
    path = tmp_path / name
    if name.lower().endswith(".csv"):
        rows.to_csv(path, index=False)
    else:
        rows.to_parquet(path, index=False)
    table = read_labels(str(path))
    assert list(table.columns) == ["image_id", "site", "label", "path", "truth_path"]
    assert table["image_id"].tolist() == ["1.2.10", "1.2.9", "007"]  # ids stay text: "007"
    assert finding_labels(table) == {"1.2.10": 1, "1.2.9": 0}
    assert site_and_label(table) == {"1.2.10": ("a", 1), "1.2.9": ("b", 0), "007": (None, None)}


def test_an_archive_folder_means_its_labels_parquet(tmp_path) -> None:
    new = labels_frame([{"image_id": "1", "site": "a", "label": 1, "path": "a/1.dcm"}])
    write_labels(str(tmp_path), new)
    assert (tmp_path / "labels.csv").exists()
    assert read_labels(str(tmp_path)).equals(read_labels(str(tmp_path / "labels.parquet")))


def test_writing_merges_and_replaces_rows_of_the_same_image(tmp_path) -> None:
    first = [{"image_id": "1", "site": "a", "label": 0, "path": "a/1.dcm"}]
    write_labels(str(tmp_path), labels_frame(first))
    second = [
        {"image_id": "1", "site": "a", "label": 1, "path": "a/1.dcm"},
        {"image_id": "2", "site": "b", "label": 0, "path": "b/2.dcm"},
    ]
    table = write_labels(str(tmp_path), labels_frame(second))
    assert finding_labels(table) == {"1": 1, "2": 0}
    assert finding_labels(read_labels(str(tmp_path))) == {"1": 1, "2": 0}


def test_identical_duplicates_collapse_and_conflicting_ones_are_refused(tmp_path) -> None:
    path = tmp_path / "t.csv"
    _frame([("1", "a", 1), ("1", "a", 1), ("2", "a", 0)]).to_csv(path, index=False)
    assert read_labels(str(path))["image_id"].tolist() == ["1", "2"]
    _frame([("1", "a", 1), ("1", "a", 0)]).to_csv(path, index=False)
    with pytest.raises(ConfigError, match='image_id 1 has labels 0 and 1 in ".*t.csv"'):
        read_labels(str(path))
    _frame([("1", "a", 1), ("1", "b", 1)]).to_csv(path, index=False)
    with pytest.raises(ConfigError, match="image_id 1 has sites a and b"):
        read_labels(str(path))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("1", "a", 2)], r"must be 0 or 1, found \[2\]"),
        ([("1", "a", "yes")], r"must be 0 or 1, found \['yes'\]"),
        ([("1", "a", 0.5)], r"must be 0 or 1, found \[0.5\]"),
        ([(None, "a", 1)], "row 0 of the labels table .* has no image_id"),
    ],
)
def test_bad_values_are_refused_with_the_fix(tmp_path, rows, message) -> None:
    path = tmp_path / "t.csv"
    _frame(rows).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=message) as info:
        read_labels(str(path))
    assert "labels.parquet that `harmonize synth` writes" in str(info.value)


def test_missing_columns_tables_and_files(tmp_path) -> None:
    (tmp_path / "t.csv").write_text("image_id,site\n1,a\n")
    with pytest.raises(ConfigError, match=r"has no column \['label'\]"):
        read_labels(str(tmp_path / "t.csv"))
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match="is not a readable labels table"):
        read_labels(str(tmp_path / "t.parquet"))
    with pytest.raises(ConfigError, match="cannot read the labels table"):
        read_labels(str(tmp_path / "none"))
