"""Which manifest rows a report counts, and the target histogram each method is measured against.

A manifest holds a row per object a run processed (manifests written before run summaries also
hold a ``skipped`` row per object a re-run skipped), so re-runs add, after a fix, ``ok`` rows for
objects that failed before. A report looks at each harmonizer configuration
(method, mode, config_hash) separately and counts, per configuration:

- the newest ``ok`` row of each ``image_id`` (rows are matched on ``image_id``, never on order);
- the newest ``error`` row of each object (``image_id``, or ``source_uri`` when the object could
  not be decoded) that has no ``ok`` row; ``skipped`` rows never count.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from harmonize.errors import HarmonizeError
from harmonize.io.manifest import MANIFEST_DIR, STATUS_ERROR, STATUS_OK, read_manifest
from harmonize.io.storage import Storage, join
from harmonize.metrics.histogram import HIST_BINS
from harmonize.models.cards import checked_histogram
from harmonize.models.files import HARMONIZER_FILE

GROUP_KEYS = ("method", "mode", "config_hash")

# The manifest columns a report reads (stage timings, DICOM attributes etc. are left on disk).
REPORT_COLUMNS = (
    "image_id", "source_uri", "site", "label", *GROUP_KEYS, "model_uri", "run_id", "status",
    "error", "out_uri", "ssim", "hist_in", "hist_out", "score_in", "score_out", "processed_at",
    "ssim_truth", "psnr_truth", "qa_flags",
)  # fmt: skip


def load_manifests(uris: Sequence[str], storage: Storage) -> pd.DataFrame:
    """Every row of every manifest under ``uris``, concatenated.

    Raises:
        HarmonizeError: no URI was given, or there is not a single row under any of them.
    """
    if not uris:
        raise HarmonizeError("no manifest URI given; pass the output prefix of `harmonize run`")
    table = pa.concat_tables([read_manifest(uri, storage) for uri in uris])
    if table.num_rows == 0:
        where = ", ".join(f'"{u}"' for u in uris)
        raise HarmonizeError(
            f"no manifest rows under {where} (looked for {MANIFEST_DIR}/run=*/part-*.parquet); "
            "run `harmonize run` first"
        )
    return table.select(list(REPORT_COLUMNS)).to_pandas()


def load_summaries(uris: Sequence[str], storage: Storage) -> pd.DataFrame:
    """The run summaries beside every manifest under ``uris`` (an output prefix or its
    manifest/ folder), concatenated; empty when none has any."""
    from harmonize.io.summaries import read_summaries

    prefixes = [u.rstrip("/").removesuffix("/" + MANIFEST_DIR) for u in uris]
    return pa.concat_tables([read_summaries(p, storage) for p in prefixes]).to_pandas()


def _newest_first(rows: pd.DataFrame) -> pd.DataFrame:
    # processed_at orders rows; run ids (UTC timestamps first) break ties and stand in for it
    # where it is missing.
    return rows.sort_values(
        ["processed_at", "run_id"], ascending=False, na_position="last", kind="stable"
    )


@dataclass(frozen=True)
class ConfigRows:
    """The counted rows of one harmonizer configuration."""

    method: str
    mode: str | None
    config_hash: str | None
    model_uri: str | None
    ok: pd.DataFrame  # newest ok row per image_id, sorted by image_id
    errors: pd.DataFrame  # newest error row per object still without an ok row
    n_error_rows: int  # every error row, all runs (an object retried twice counts twice)

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return self.method, self.mode, self.config_hash


def _none_if_na(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def select_rows(manifest: pd.DataFrame, exclude_site: str | None = None) -> list[ConfigRows]:
    """The counted rows of each (method, mode, config_hash) in ``manifest``, sorted by method.

    ``exclude_site`` drops that site's rows first (the target site's own images, when a run
    included them, say nothing about moving source images toward the target).
    """
    rows = manifest
    if exclude_site is not None:
        rows = rows[rows["site"] != exclude_site]
    rows = rows[rows["status"].isin([STATUS_OK, STATUS_ERROR]) & rows["method"].notna()]
    out = []
    for key, group in rows.groupby(list(GROUP_KEYS), dropna=False, sort=True):
        method, mode, config_hash = (_none_if_na(k) for k in key)
        group = _newest_first(group)
        ok = group[(group["status"] == STATUS_OK) & group["image_id"].notna()]
        ok = ok.drop_duplicates("image_id", keep="first").sort_values("image_id")
        errors = group[group["status"] == STATUS_ERROR]
        object_key = errors["image_id"].fillna(errors["source_uri"])
        fixed = errors["image_id"].isin(ok["image_id"]) | errors["source_uri"].isin(
            ok["source_uri"]
        )
        current = errors[~fixed].assign(_object=object_key[~fixed])
        current = current.drop_duplicates("_object", keep="first").drop(columns="_object")
        model_uris = group["model_uri"].dropna()
        out.append(
            ConfigRows(
                method=str(method),
                mode=mode,
                config_hash=config_hash,
                model_uri=str(model_uris.iloc[0]) if len(model_uris) else None,
                ok=ok.reset_index(drop=True),
                errors=current.reset_index(drop=True),
                n_error_rows=len(errors),
            )
        )
    return out


def stacked_histograms(column: pd.Series) -> np.ndarray:
    """A column of per-image histograms as an (n, HIST_BINS) float64 array; rows whose value is
    missing, has another number of bins or is not a histogram (negative, all zero) become NaN."""
    out = np.full((len(column), HIST_BINS), np.nan)
    for i, value in enumerate(column):
        if value is not None and len(value) == HIST_BINS:
            hist = np.asarray(value, dtype=np.float64)
            if np.all(np.isfinite(hist)) and np.all(hist >= 0) and hist.sum() > 0:
                out[i] = hist
    return out


@dataclass(frozen=True)
class TargetHistogram:
    """The target site's mean histogram (``None`` when unknown) and where it came from (or why
    it is missing), in words for the report."""

    values: np.ndarray | None
    source: str


def _check_histogram(values: object, where: str) -> TargetHistogram:
    arr, problem = checked_histogram(values, HIST_BINS)
    if arr is None:
        return TargetHistogram(None, f"{where} has a target_histogram {problem}")
    return TargetHistogram(arr, where)


def read_card(model_uri: str | None, storage: Storage) -> tuple[dict[str, Any] | None, str]:
    """The model card under ``model_uri`` and its path, or ``None`` and why there is none."""
    if not model_uri:
        return None, "the rows name no model_uri"
    path = join(model_uri, HARMONIZER_FILE)
    try:
        card = json.loads(storage.read_text(path)).get("card") or {}
    except (HarmonizeError, ValueError, AttributeError) as err:
        return None, f'no readable model card at "{path}" ({err})'
    if not isinstance(card, dict):
        return None, f'the model card at "{path}" is not a mapping'
    return card, path


def card_target_histogram(model_uri: str | None, storage: Storage) -> TargetHistogram:
    """``card.target_histogram`` of the model file under ``model_uri``."""
    card, path = read_card(model_uri, storage)
    if card is None:
        return TargetHistogram(None, path)
    if "target_histogram" not in card:
        return TargetHistogram(None, f'the model card at "{path}" has no target_histogram')
    return _check_histogram(card["target_histogram"], f'model card "{path}"')


def site_target_histogram(manifest: pd.DataFrame, site: str) -> TargetHistogram:
    """The mean original histogram (``hist_in``) of the target site's images in the manifest,
    one newest ``ok`` row per image_id whatever the method (hist_in is the original's)."""
    rows = manifest[(manifest["site"] == site) & (manifest["status"] == STATUS_OK)]
    rows = _newest_first(rows[rows["image_id"].notna()]).drop_duplicates("image_id")
    hists = stacked_histograms(rows["hist_in"])
    hists = hists[~np.isnan(hists).any(axis=1)]
    if len(hists) == 0:
        return TargetHistogram(None, f'no ok rows of target site "{site}" with a histogram')
    return TargetHistogram(hists.mean(axis=0), f'{len(hists)} images of site "{site}" (manifest)')
