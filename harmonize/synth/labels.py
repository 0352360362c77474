"""The labels table of an archive: ``OUT/labels.parquet`` (and the same rows in ``labels.csv``).

Columns: ``image_id`` (SOPInstanceUID), ``site``, ``label`` (nullable integer, 1 = TB-like
finding), ``path`` (relative to OUT, e.g. ``mc-like/1.2.3.dcm``). Writing merges with an existing
table, so several ``synth`` or ``--from-png`` calls into one OUT build one multi-site archive.
"""

from __future__ import annotations

import io

import pandas as pd

from harmonize.io.storage import Storage, join

COLUMNS = ["image_id", "site", "label", "path"]
PARQUET_NAME = "labels.parquet"
CSV_NAME = "labels.csv"


def labels_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Rows as a table with the canonical columns and dtypes."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype(
        {"image_id": "string", "site": "string", "label": "Int64", "path": "string"}
    )


def read_labels(out_uri: str, storage: Storage | None = None) -> pd.DataFrame:
    """The labels table of the archive at ``out_uri``."""
    storage = storage or Storage()
    data = storage.read(join(out_uri, PARQUET_NAME))
    return labels_frame(pd.read_parquet(io.BytesIO(data)).to_dict("records"))


def write_labels(out_uri: str, new: pd.DataFrame, storage: Storage | None = None) -> pd.DataFrame:
    """Merge ``new`` into the archive's labels table (a row with the same ``image_id`` is
    replaced), write it as Parquet and CSV, and return the merged table sorted by site, path."""
    storage = storage or Storage()
    table = labels_frame(new.to_dict("records"))
    if storage.exists(join(out_uri, PARQUET_NAME)):
        table = pd.concat([read_labels(out_uri, storage), table], ignore_index=True)
        table = table.drop_duplicates("image_id", keep="last")
    table = table.sort_values(["site", "path"], kind="stable").reset_index(drop=True)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    storage.write(join(out_uri, PARQUET_NAME), buffer.getvalue())
    storage.write_text(join(out_uri, CSV_NAME), table.to_csv(index=False))
    return table
