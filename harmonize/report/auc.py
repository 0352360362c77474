"""The classifier evidence of a report (the paper's Table 2): ROC AUC of a target-site classifier
on original and harmonized images, with DeLong 95% intervals and paired differences.

Rows, each counting one row per ``image_id`` (images are matched on ``image_id``, never on row
order):

- **in-domain**: ``score_in`` of the target site's images (the classifier on its own site);
- **in-domain, harmonized by M**: ``score_out`` of the target site's images that a run passed
  through method M (a harmonizer should leave the target's own images as the classifier knows
  them: this AUC should stay at the in-domain one);
- **original**: ``score_in`` of the source images (every site but the target), whatever run or
  method scored them; when runs disagree on an image's ``score_in`` by more than
  `SCORE_TOLERANCE`, the newest row's value is used and a note says so;
- one per harmonizer configuration (the rows `harmonize.report.data.select_rows` counts):
  ``score_out``, and its change against the original scores of the same images (paired DeLong).

Labels come from the ``label`` column of any row of the image (runs without ``--labels`` leave it
null; another run's rows may hold it). Rows that are not ``ok``, have no 0/1 label or no finite
score are left out and counted in the notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from harmonize.io.manifest import STATUS_OK
from harmonize.metrics.roc import (
    AucDifference,
    auc_ci_delong,
    auc_difference_delong,
    roc_auc,
    roc_curve,
)
from harmonize.report.summary import MethodSummary

SCORE_TOLERANCE = 1e-6  # score_in values of one image that differ by more are reported
CI_LEVEL = 0.95

#: target: in-domain originals; target-harmonized: the target's images through a method (what
#: a harmonizer does to images already of the target site); source: originals; config: a method.
Kind = Literal["target", "target-harmonized", "source", "config"]


@dataclass(frozen=True)
class LeftOut:
    """Objects (images, or undecodable source objects) a row could not count, by reason."""

    not_ok: int = 0  # no ok row
    no_label: int = 0  # ok, but no 0/1 label in any row of the image
    no_score: int = 0  # ok and labelled, but no finite score

    @property
    def total(self) -> int:
        return self.not_ok + self.no_label + self.no_score


@dataclass(frozen=True)
class AucRow:
    """One row of Table 2.

    ``data`` holds the counted images (columns image_id, label, score), sorted by image_id.
    ``auc`` is ``None`` when the images are not of both classes; ``ci`` also when either class
    has fewer than 2 images. ``change`` (configurations only) is AUC(score_out) -
    AUC(original score_in) on the ``n_paired`` images counted in both rows.
    """

    condition: str
    kind: Kind
    score_column: str
    data: pd.DataFrame
    left_out: LeftOut
    auc: float | None
    ci: tuple[float, float] | None
    roc: tuple[np.ndarray, np.ndarray] | None  # (fpr, tpr)
    change: AucDifference | None = None
    n_paired: int = 0
    color: int = 0  # a configuration's index among the report's summaries (figure colours)
    method_mode: tuple[str, str | None] | None = None  # config / target-harmonized rows

    @property
    def n_pos(self) -> int:
        return int((self.data["label"] == 1).sum())

    @property
    def n_neg(self) -> int:
        return int((self.data["label"] == 0).sum())


@dataclass(frozen=True)
class ClassifierTable:
    rows: tuple[AucRow, ...]
    notes: tuple[str, ...]
    target_site: str | None

    def row(self, kind: Kind) -> AucRow | None:
        """The first row of this kind (``target`` or ``source``)."""
        return next((r for r in self.rows if r.kind == kind), None)


def _newest_first(rows: pd.DataFrame, score: str) -> pd.DataFrame:
    """Newest row first (processed_at, then run id); the other keys only make ties
    deterministic, so that the input's row order never decides which row is 'first'."""
    keys = ["processed_at", "run_id", "method", "mode", "config_hash", "source_uri", score]
    return rows.sort_values(
        keys, ascending=[False, False, True, True, True, True, True], na_position="last",
        kind="stable",
    )  # fmt: skip


def _numeric(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce").astype(np.float64)


def image_labels(manifest: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(image_id, label) of every image with a 0/1 label in any row (the newest row's when rows
    disagree), and how many images have rows that disagree."""
    rows = manifest[manifest["image_id"].notna()].assign(_label=_numeric(manifest["label"]))
    rows = rows[rows["_label"].isin([0.0, 1.0])]
    conflicts = int((rows.groupby("image_id")["_label"].nunique() > 1).sum())
    newest = _newest_first(rows, "_label").drop_duplicates("image_id", keep="first")
    labels = newest[["image_id"]].assign(label=newest["_label"].astype(np.int64))
    return labels.reset_index(drop=True), conflicts


def _with_labels(
    images: pd.DataFrame, labels: pd.DataFrame, score: str
) -> tuple[pd.DataFrame, int, int]:
    """``images`` (one row per image_id, column ``score``) joined to their labels on image_id:
    the rows with a label and a finite score, and the counts without a label / without a score."""
    joined = images[["image_id", score]].merge(
        labels, on="image_id", how="left", validate="one_to_one"
    )
    values = _numeric(joined[score])
    has_label, has_score = joined["label"].notna(), np.isfinite(values)
    kept = joined[has_label & has_score]
    data = pd.DataFrame(
        {
            "image_id": kept["image_id"].astype(str),
            "label": kept["label"].astype(np.int64),
            "score": values[has_label & has_score],
        }
    )
    data = data.sort_values("image_id", kind="stable").reset_index(drop=True)
    return data, int((~has_label).sum()), int((has_label & ~has_score).sum())


def _auc_cells(
    data: pd.DataFrame,
) -> tuple[float | None, tuple[float, float] | None, tuple[np.ndarray, np.ndarray] | None]:
    labels, scores = data["label"].to_numpy(), data["score"].to_numpy()
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        return None, None, None
    auc = roc_auc(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    ci = None
    if min(n_pos, len(labels) - n_pos) >= 2:
        _, low, high = auc_ci_delong(labels, scores, CI_LEVEL)
        ci = (low, high)
    return auc, ci, (fpr, tpr)


def _site_row(
    manifest: pd.DataFrame,
    in_site: pd.Series,
    labels: pd.DataFrame,
    condition: str,
    kind: Kind,
    notes: list[str],
) -> AucRow | None:
    """The score_in row of the images selected by ``in_site`` (one per image_id, any method)."""
    rows = manifest[in_site]
    if rows.empty:
        return None
    ok = rows[(rows["status"] == STATUS_OK) & rows["image_id"].notna()]
    # Objects without an ok row: by image_id, or by source_uri for undecodable ones.
    other = rows[rows["status"] != STATUS_OK]
    fixed = other["image_id"].isin(ok["image_id"]) | other["source_uri"].isin(ok["source_uri"])
    not_ok = int(other[~fixed]["image_id"].fillna(other[~fixed]["source_uri"]).nunique())

    scored = ok.assign(_score=_numeric(ok["score_in"]))
    scored = scored[np.isfinite(scored["_score"])]
    spread = scored.groupby("image_id")["_score"].agg(lambda s: float(s.max() - s.min()))
    differing = spread[spread > SCORE_TOLERANCE]
    if len(differing):
        notes.append(
            f"{condition}: {len(differing)} image(s) have `score_in` values that differ by more "
            f"than {SCORE_TOLERANCE:g} between runs/methods (largest difference "
            f"{differing.max():.3g}, e.g. `{differing.idxmax()}`); the newest row's value is used."
        )
    first = _newest_first(scored, "_score").drop_duplicates("image_id", keep="first")
    images = pd.DataFrame({"image_id": ok["image_id"].drop_duplicates()})
    images = images.merge(
        first[["image_id", "_score"]].rename(columns={"_score": "score_in"}),
        on="image_id",
        how="left",
        validate="one_to_one",
    )
    data, no_label, no_score = _with_labels(images, labels, "score_in")
    auc, ci, roc = _auc_cells(data)
    return AucRow(
        condition, kind, "score_in", data, LeftOut(not_ok, no_label, no_score), auc, ci, roc
    )


def _target_harmonized(
    manifest: pd.DataFrame, in_target: pd.Series, labels: pd.DataFrame
) -> list[AucRow]:
    """A ``score_out`` row per method (and mode) that harmonized target-site images: a method
    should leave the target site's own images as the classifier knows them."""
    rows = manifest[in_target & (manifest["status"] == STATUS_OK) & manifest["image_id"].notna()]
    rows = rows.assign(_score=_numeric(rows["score_out"]))
    rows = rows[np.isfinite(rows["_score"])]
    several_modes = rows.groupby("method")["mode"].nunique().gt(1)
    out = []
    for (method, mode), group in rows.groupby(["method", "mode"], sort=True, dropna=False):
        newest = _newest_first(group, "_score").drop_duplicates("image_id", keep="first")
        images = newest[["image_id", "_score"]].rename(columns={"_score": "score_out"})
        data, no_label, no_score = _with_labels(images, labels, "score_out")
        auc, ci, roc = _auc_cells(data)
        name = f"{method} ({mode})" if several_modes.get(method, False) else str(method)
        out.append(
            AucRow(
                f"in-domain, harmonized by {name}", "target-harmonized", "score_out", data,
                LeftOut(0, no_label, no_score), auc, ci, roc,
                method_mode=(str(method), None if pd.isna(mode) else str(mode)),
            )
        )  # fmt: skip
    return out


def _paired_change(row: pd.DataFrame, original: AucRow | None) -> tuple[AucDifference | None, int]:
    """Paired DeLong (score_out - score_in) on the images counted both in ``row`` (image_id,
    label, score_out) and in the original row, aligned by an explicit merge on image_id."""
    if original is None:
        return None, 0
    paired = row.merge(
        original.data[["image_id", "score"]].rename(columns={"score": "score_in"}),
        on="image_id",
        validate="one_to_one",
    )
    labels = paired["label"].to_numpy()
    n_pos = int(labels.sum())
    if min(n_pos, len(labels) - n_pos) < 2:
        return None, len(paired)
    change = auc_difference_delong(
        labels, paired["score_out"].to_numpy(), paired["score_in"].to_numpy(), CI_LEVEL
    )
    return change, len(paired)


def _describe_left_out(row: AucRow) -> str | None:
    parts = []
    if row.left_out.not_ok:
        parts.append(f"{row.left_out.not_ok} without an `ok` row")
    if row.left_out.no_label:
        parts.append(f"{row.left_out.no_label} without a 0/1 label")
    if row.left_out.no_score:
        parts.append(f"{row.left_out.no_score} without `{row.score_column}`")
    if not parts:
        return None
    return f"{row.condition}: left out {', '.join(parts)}."


def classifier_table(
    manifest: pd.DataFrame, summaries: Sequence[MethodSummary], target_site: str | None
) -> ClassifierTable | None:
    """Table 2 from the manifest rows and the report's configurations; ``None`` when no row
    carries a classifier score."""
    if not (manifest["score_in"].notna().any() or manifest["score_out"].notna().any()):
        return None
    notes: list[str] = []
    labels, conflicts = image_labels(manifest)
    if conflicts:
        notes.append(
            f"{conflicts} image(s) have different labels in different rows; the newest row's "
            "label is used."
        )
    rows: list[AucRow] = []
    sites = manifest["site"]
    if target_site is not None:
        target = _site_row(
            manifest,
            sites == target_site,
            labels,
            f'in-domain (target site "{target_site}")',
            "target",
            notes,
        )
        if target is None:
            notes.append(f'No rows of the target site "{target_site}": no in-domain row.')
        else:
            rows.append(target)
            rows += _target_harmonized(manifest, sites == target_site, labels)
        source_sites = sorted(sites[sites != target_site].dropna().unique())
        names = ", ".join(f'"{s}"' for s in source_sites) or "none"
        condition = f"original (source site{'s' if len(source_sites) > 1 else ''} {names})"
        in_source = sites != target_site
    else:
        notes.append(
            "No target site named (`target_site`): no in-domain row, and the original row "
            "counts the images of every site."
        )
        condition, in_source = "original (all sites)", pd.Series(True, index=manifest.index)
    original = _site_row(manifest, in_source, labels, condition, "source", notes)
    if original is not None:
        rows.append(original)

    for index, s in enumerate(summaries):
        data, no_label, no_score = _with_labels(s.rows.ok, labels, "score_out")
        auc, ci, roc = _auc_cells(data)
        change, n_paired = _paired_change(data.rename(columns={"score": "score_out"}), original)
        row = AucRow(
            s.label,
            "config",
            "score_out",
            data,
            LeftOut(s.n_error, no_label, no_score),
            auc,
            ci,
            roc,
            change,
            n_paired,
            index,
            (s.rows.method, s.rows.mode),
        )
        rows.append(row)
        if (
            original is not None
            and change is not None
            and (n_paired != len(data) or n_paired != len(original.data))
        ):
            notes.append(
                f"{s.label}: the change is measured on the {n_paired} images counted in both "
                f"this row ({len(data)}) and the original row ({len(original.data)})."
            )
        elif original is not None and change is None and len(data):
            notes.append(
                f"{s.label}: no paired comparison: the {n_paired} images counted in both this "
                "row and the original row need at least 2 positives and 2 negatives."
            )

    for row in rows:
        described = _describe_left_out(row)
        if described:
            notes.append(described)
        if row.auc is None and len(row.data):
            notes.append(f"{row.condition}: no AUC, its images are all of one class.")
        elif row.auc is None:
            notes.append(f"{row.condition}: no AUC, no image has both a label and a score.")
        elif row.ci is None:
            notes.append(
                f"{row.condition}: no confidence interval (needs at least 2 positives and 2 "
                "negatives)."
            )
    return ClassifierTable(tuple(rows), tuple(notes), target_site)
