"""The report's sections, built from the manifest and the per-configuration summaries.

Each builder returns a `Section` (or ``None`` when it has nothing to say); `build_report` lists
them in order. The summary holds the paper's Table 1 (SSIM mean ± std per method, with histogram
distances), `classifier_section` its Table 2 (ROC AUC with DeLong intervals).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harmonize.io.manifest import STATUS_ERROR, STATUS_OK, STATUS_SKIPPED
from harmonize.report.auc import AucRow, ClassifierTable
from harmonize.report.document import BulletList, Figure, Paragraph, Section, Table
from harmonize.report.summary import Distances, MethodSummary

MAX_RUNS_LISTED = 20
MAX_REASONS = 3  # distinct error reasons listed per configuration
REASON_CHARS = 160


def _num(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def _percent(value: float | None) -> str:
    """A signed change, ``−93.6 %`` (a true minus sign: it cannot be read as a dash)."""
    return "n/a" if value is None else f"{value:+.1f} %".replace("-", "\u2212")


def _runs(manifest: pd.DataFrame, summaries: pd.DataFrame) -> pd.DataFrame:
    """One line per run: the counts of its summary where it has one (finished runs since run
    summaries exist), else of its rows (older manifests with a skipped row per object, and
    runs that did not finish)."""
    runs = (
        manifest.groupby(["run_id", "method"], dropna=False)
        .agg(
            started=("processed_at", "min"),
            ok=("status", lambda s: int((s == STATUS_OK).sum())),
            error=("status", lambda s: int((s == STATUS_ERROR).sum())),
            skipped=("status", lambda s: int((s == STATUS_SKIPPED).sum())),
        )
        .reset_index()
    )
    if len(summaries):
        summed = (
            summaries.groupby(["run_id", "method"], dropna=False)
            .agg(
                started=("started_at", "min"),
                ok=("ok", "sum"),
                error=("error", "sum"),
                skipped=("skipped", "sum"),
            )
            .reset_index()
        )
        keys = set(zip(summed.run_id, summed.method, strict=True))
        rows_only = [k not in keys for k in zip(runs.run_id, runs.method, strict=True)]
        runs = pd.concat([summed, runs[rows_only]], ignore_index=True)
    return runs.sort_values(["started", "run_id"], na_position="first")


def inputs_section(
    manifest: pd.DataFrame, uris: Sequence[str], summaries: pd.DataFrame | None = None
) -> Section:
    runs = _runs(manifest, summaries if summaries is not None else pd.DataFrame())
    totals = {k: int(runs[k].sum()) for k in ("ok", "error", "skipped")}
    text = (
        f"{len(uris)} manifest(s): {', '.join(f'`{u}`' for u in uris)}; {len(manifest)} rows "
        f"from {len(runs)} run(s): ok {totals['ok']}, error {totals['error']}, skipped "
        f"{totals['skipped']}."
    )
    shown = runs.tail(MAX_RUNS_LISTED)
    blocks: list[Paragraph | Table] = [Paragraph(text)]
    if len(runs) > len(shown):
        blocks.append(Paragraph(f"The {len(shown)} latest of {len(runs)} runs:"))
    blocks.append(
        Table(
            ("run", "method", "first row at", "ok", "error", "skipped"),
            tuple(
                (
                    str(r.run_id),
                    str(r.method),
                    "" if pd.isna(r.started) else f"{r.started:%Y-%m-%d %H:%M:%S}",
                    str(r.ok),
                    str(r.error),
                    str(r.skipped),
                )
                for r in shown.itertuples()
            ),
            (False, False, False, True, True, True),
        )
    )
    return Section("Inputs", tuple(blocks))


def _mean_std(values: np.ndarray, spec: str) -> str:
    """``mean ± std`` (population std) of ``values``, or n/a when there are none."""
    if not values.size:
        return "n/a"
    return f"{format(float(values.mean()), spec)} ± {format(float(values.std()), spec)}"


def _distance_cells(d: Distances | None) -> tuple[str, str, str]:
    if d is None:
        return "n/a", "n/a", "n/a"
    return _num(d.before), _num(d.after), _percent(d.change_percent)


TRUTH_HEADERS = ("SSIM vs truth", "PSNR vs truth (dB)")
SUMMARY_HEADERS = (
    "method",
    "n ok",
    "n error",
    "SSIM mean ± std",
    "mean-hist W1 before",
    "mean-hist W1 after",
    "mean-hist change",
    "per-image W1 before",
    "per-image W1 after",
    "per-image change",
)


def summary_section(
    summaries: Sequence[MethodSummary], excluded_site: str | None, qa_line: str | None = None
) -> Section:
    """Table 1 and its notes; ``qa_line`` (how many images QA flagged) closes the notes."""
    if not summaries:
        return Section("Summary", (Paragraph("No `ok` or `error` rows: every row was skipped."),))
    truth = any(s.ssim_truth.size for s in summaries)  # a paired truth: two more columns
    headers = SUMMARY_HEADERS + (TRUTH_HEADERS if truth else ())
    rows = []
    for s in summaries:
        rows.append(
            (s.label, str(s.n_ok), str(s.n_error), _mean_std(s.ssim, ".4f"))
            + _distance_cells(s.mean_hist)
            + _distance_cells(s.per_image)
            + ((_mean_std(s.ssim_truth, ".4f"), _mean_std(s.psnr_truth, ".2f")) if truth else ())
        )
    caption = Paragraph(
        "**Table 1.** Per harmonizer: images counted, SSIM(original, harmonized) mean ± std, and "
        "the histogram distance to the target site before and after harmonization."
    )
    table = Table(headers, tuple(rows), (False,) + (True,) * (len(headers) - 1))
    explain = Paragraph(
        "Counted per configuration: the newest `ok` row of each image_id (re-runs and skipped rows "
        "do not count twice). SSIM(original, harmonized): mean ± population std over those images. "
        "W1: Wasserstein-1 distance in display intensity (0..1) between 64-bin histograms and the "
        "target site's histogram, BEFORE (originals, `hist_in`) and AFTER (harmonized, "
        "`hist_out`); change = (after − before) / before, negative when the harmonized images are "
        "closer to the target. **mean-hist**: distance of the mean "
        "histogram of the harmonized set; **per-image**: mean over images of each image's own "
        "distance (stricter: per-image spread does not cancel)."
        + (
            " **vs truth**: SSIM and PSNR (dB) of the harmonized image against the same patient "
            "imaged at the target site (the labels table's `truth_path`), mean ± std."
            if truth
            else ""
        )
    )
    notes = []
    for s in summaries:
        if s.target.values is None:
            notes.append(f"{s.label}: no target histogram, so no distances: {s.target.source}.")
        else:
            notes.append(f"{s.label}: target histogram from {s.target.source}.")
        if s.target.values is not None and s.n_hist < s.n_ok:
            notes.append(
                f"{s.label}: {s.n_ok - s.n_hist} ok rows lack a histogram; W1 uses "
                f"the other {s.n_hist}."
            )
        if len(s.ssim) < s.n_ok:
            notes.append(f"{s.label}: {s.n_ok - len(s.ssim)} ok rows lack an SSIM.")
    if excluded_site is not None:
        notes.append(f'Rows of the target site "{excluded_site}" are left out of this table.')
    if qa_line:
        notes.append(qa_line)
    return Section("Summary", (caption, table, explain, BulletList(tuple(notes))))


def _first_line(error: object) -> str:
    text = str(error or "no reason recorded").strip().splitlines()[0]
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def errors_section(summaries: Sequence[MethodSummary]) -> Section:
    failing = [s for s in summaries if s.n_error]
    if not failing:
        return Section("Errors", (Paragraph("No errors: every object has an `ok` row."),))
    counts = Table(
        ("method", "objects without an ok row", "error rows, all runs"),
        tuple((s.label, str(s.n_error), str(s.rows.n_error_rows)) for s in failing),
        (False, True, True),
    )
    reasons = []
    for s in failing:
        errors = s.rows.errors.assign(reason=s.rows.errors["error"].map(_first_line))
        by_reason = errors.groupby("reason", sort=False)
        top = by_reason.size().sort_values(ascending=False, kind="stable").head(MAX_REASONS)
        for reason, n in top.items():
            example = by_reason.get_group(reason)["source_uri"].iloc[0]
            reasons.append((s.label, str(reason), str(n), str(example)))
    detail = Table(
        ("method", f"reason (first {MAX_REASONS} per method)", "objects", "example object"),
        tuple(reasons),
        (False, False, True, False),
    )
    return Section("Errors", (counts, detail))


def _interval(low: float, high: float, spec: str = ".4f") -> str:
    return f"[{format(low, spec)}, {format(high, spec)}]"


def _p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


CLASSIFIER_HEADERS = (
    "condition",
    "scores",
    "n (pos / neg)",
    "AUC",
    "95% CI",
    "ΔAUC vs original",
    "ΔAUC 95% CI",
    "p (paired)",
)


def _classifier_cells(row: AucRow) -> tuple[str, ...]:
    auc = _num(row.auc)
    ci = "n/a" if row.ci is None else _interval(*row.ci)
    if row.kind == "source":
        change = ("(reference)", "—", "—")
    elif row.change is None:
        change = ("n/a", "n/a", "n/a") if row.kind == "config" else ("—", "—", "—")
    else:
        d = row.change
        change = (f"{d.diff:+.4f}", _interval(d.low, d.high, "+.4f"), _p_value(d.p_value))
    n = f"{len(row.data)} ({row.n_pos} / {row.n_neg})"
    return (row.condition, f"`{row.score_column}`", n, auc, ci, *change)


def classifier_section(table: ClassifierTable | None) -> Section | None:
    """Table 2: ROC AUC of the target-site classifier on in-domain, original and harmonized
    images, each with its DeLong 95% CI, and each harmonizer's paired change vs the original."""
    if table is None:
        return None
    caption = Paragraph(
        "**Table 2.** ROC AUC of the target-site classifier: on the target site's own images "
        "(in-domain; and, where a run passed them through a harmonizer, after it: it should "
        "leave them as they are), on the source images as they are (original, `score_in`) and "
        "after each harmonizer (`score_out`). One row per image_id; 95% CI by DeLong's method. "
        "ΔAUC = AUC harmonized − AUC original on the same images (paired DeLong test; p "
        "two-sided)."
    )
    rows = tuple(_classifier_cells(r) for r in table.rows)
    numeric = (False, False) + (True,) * (len(CLASSIFIER_HEADERS) - 2)
    blocks: list[Paragraph | Table | BulletList] = [caption]
    if rows:
        blocks.append(Table(CLASSIFIER_HEADERS, rows, numeric))
    else:
        blocks.append(Paragraph("No `ok` row carries both a label and a classifier score."))
    if table.notes:
        blocks.append(BulletList(table.notes))
    return Section("Classifier ROC AUC", tuple(blocks))


def figures_section(figures: Sequence[Figure], notes: Sequence[str]) -> Section:
    blocks: list[Figure | BulletList] = list(figures)
    if notes:
        blocks.append(BulletList(tuple(notes)))
    return Section("Figures", tuple(blocks))
