"""Labels tables: the one reader (and the archive's writer) of image_id, site, label, path and
truth_path.

A labels table is Parquet, or CSV when its name ends ``.csv`` (any case), with at least the
columns ``image_id`` (SOPInstanceUID) and ``label`` (1 = finding, 0 = none, empty = unknown);
``site``, ``path`` and ``truth_path`` (the same patient imaged at the truth site, a path under
the archive: ``harmonize synth --truth-site``) are optional. ``harmonize synth`` writes one per
archive, ``OUT/labels.parquet`` (and the same rows as ``labels.csv``); wherever a labels URI is
asked for, the archive folder itself may be given and its ``labels.parquet`` is read.

One set of rules everywhere (``harmonize run --labels``, ``train classifier --labels``, the
report): labels are 0, 1 or empty; an image_id listed twice must say the same both times (the
copies collapse into one row), otherwise the table is refused.

Example::

    table = read_labels("data/archive")                 # data/archive/labels.parquet
    finding = finding_labels(table)                     # {image_id: 0 | 1}, labelled rows only
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pandas as pd

from harmonize.errors import ConfigError, HarmonizeError

if TYPE_CHECKING:
    from harmonize.io.storage import Storage

COLUMNS = ["image_id", "site", "label", "path", "truth_path"]
PARQUET_NAME = "labels.parquet"
CSV_NAME = "labels.csv"
_FIX = (
    "pass the labels.parquet that `harmonize synth` writes next to the site folders, or a "
    "Parquet/CSV table with columns image_id (SOPInstanceUID) and label (1 = finding)"
)


def labels_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Rows as a table with the canonical columns and dtypes (missing columns are empty)."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    text = dict.fromkeys(("image_id", "site", "path", "truth_path"), "string")
    return frame.astype({**text, "label": "Int64"})


def table_uri(uri: str) -> str:
    """``uri`` itself when it names a .parquet or .csv table, else ``uri/labels.parquet``."""
    if uri.lower().endswith((".parquet", ".csv")):
        return uri
    return f"{uri.rstrip('/')}/{PARQUET_NAME}"


def _parse(raw: bytes, uri: str) -> pd.DataFrame:
    try:
        if uri.lower().endswith(".csv"):
            text = dict.fromkeys(("image_id", "site", "path", "truth_path"), str)
            return pd.read_csv(io.BytesIO(raw), dtype=text)
        return pd.read_parquet(io.BytesIO(raw))
    except Exception as err:  # pandas/pyarrow raise many types; all mean "not a table"
        raise ConfigError(f'"{uri}" is not a readable labels table: {err}; {_FIX}') from err


def _checked_labels(column: pd.Series, uri: str) -> pd.Series:
    numeric = pd.to_numeric(column, errors="coerce")
    numbers = {int(v) if float(v).is_integer() else float(v) for v in numeric.dropna()}
    words = set(column[column.notna() & numeric.isna()].astype(str))
    bad = [*sorted(numbers - {0, 1}), *sorted(words)]
    if bad:
        raise ConfigError(f'labels in "{uri}" must be 0 or 1, found {bad}; {_FIX}')
    return numeric.astype("Int64")


def _collapse_duplicates(table: pd.DataFrame, uri: str) -> pd.DataFrame:
    repeated = table[table.duplicated("image_id", keep=False)]
    for image_id, copies in repeated.groupby("image_id", sort=True):
        for column in ("label", "site"):
            values = sorted(str(v) for v in copies[column].dropna().unique())
            if len(values) > 1:
                raise ConfigError(
                    f'image_id {image_id} has {column}s {" and ".join(values)} in "{uri}"; '
                    "an image must be listed once, or the same way each time: fix the table"
                )
    return table.drop_duplicates("image_id", keep="first").reset_index(drop=True)


def read_labels(uri: str, storage: Storage | None = None) -> pd.DataFrame:
    """The labels table at ``uri`` (a table, or an archive folder holding labels.parquet) with
    the canonical columns and dtypes, one row per image_id.

    Raises:
        ConfigError: the table is missing or unreadable, lacks image_id or label, holds a label
            other than 0/1/empty, or lists one image_id with two different labels or sites.
    """
    from harmonize.io.storage import Storage

    uri = table_uri(uri)
    try:
        raw = (storage or Storage()).read(uri)
    except HarmonizeError as err:
        raise ConfigError(f'cannot read the labels table "{uri}": {err}; {_FIX}') from err
    table = _parse(raw, uri)
    missing = sorted({"image_id", "label"} - set(table.columns))
    if missing:
        raise ConfigError(f'the labels table "{uri}" has no column {missing}; {_FIX}')
    if table["image_id"].isna().any():
        row = int(table.index[table["image_id"].isna()][0])
        raise ConfigError(f'row {row} of the labels table "{uri}" has no image_id; {_FIX}')
    table = table.assign(label=_checked_labels(table["label"], uri))
    table = labels_frame(table.reindex(columns=COLUMNS).to_dict("records"))
    return _collapse_duplicates(table, uri)


def finding_labels(table: pd.DataFrame) -> dict[str, int]:
    """``{image_id: label}`` of the labelled rows (the classifier's training targets)."""
    known = table[table["label"].notna()]
    return dict(zip(known["image_id"].astype(str), known["label"].astype(int), strict=True))


def site_and_label(table: pd.DataFrame) -> dict[str, tuple[str | None, int | None]]:
    """``{image_id: (site, label)}`` of every row, None where the table leaves it empty."""
    return {
        str(image_id): (
            None if pd.isna(site) else str(site),
            None if pd.isna(label) else int(label),
        )
        for image_id, site, label in zip(
            table["image_id"], table["site"], table["label"], strict=True
        )
    }


def write_labels(out_uri: str, new: pd.DataFrame, storage: Storage | None = None) -> pd.DataFrame:
    """Merge ``new`` into the archive's labels table (a row with the same ``image_id`` is
    replaced), write it as Parquet and CSV, and return the merged table sorted by site, path."""
    from harmonize.io.storage import Storage, join

    storage = storage or Storage()
    table = labels_frame(new.to_dict("records"))
    if storage.exists(join(out_uri, PARQUET_NAME)):
        old = read_labels(out_uri, storage)
        table = pd.concat([old, table], ignore_index=True).drop_duplicates("image_id", keep="last")
    table = table.sort_values(["site", "path"], kind="stable").reset_index(drop=True)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    storage.write(join(out_uri, PARQUET_NAME), buffer.getvalue())
    storage.write_text(join(out_uri, CSV_NAME), table.to_csv(index=False))
    return table
