"""The method guide's rule applied to one report's own figures: which configuration to use.

docs/results.md's method guide comes from measured tables: no method and mode is best on every
kind of site difference, but one rule picked the right one on each family measured. A harmonizer
must first do no harm to images that already look right: applied to the target site's own test
images it must keep the in-domain AUC within ``NO_OP_TOLERANCE``. Among the configurations that
keep it, the highest AUC on the source site's images wins (ties: the higher SSIM against the
truth image, then SSIM against the original). The rule is applied to whatever the report holds,
so on a user's own two sites (``harmonize experiment --source ... --target ...``) it picks from
their figures, not from the synthetic families'.

Example::

    choice = recommend(table, summaries)
    print(choice.sentence)   # "Recommended for this site pair: cyclegan (local) ..."
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harmonize.report.auc import AucRow, ClassifierTable
from harmonize.report.document import Paragraph, Section
from harmonize.report.summary import MethodSummary

#: How far a harmonizer may move the in-domain AUC on the target site's own images.
NO_OP_TOLERANCE = 0.01


@dataclass(frozen=True)
class Candidate:
    """One configuration's figures as the rule reads them."""

    label: str
    auc: float
    in_domain_after: float | None  # None: its run did not pass the target's own images
    ssim_truth: float | None
    ssim: float | None

    def keeps_target(self, in_domain: float | None) -> bool | None:
        if in_domain is None or self.in_domain_after is None:
            return None
        return abs(self.in_domain_after - in_domain) <= NO_OP_TOLERANCE


@dataclass(frozen=True)
class Choice:
    """The recommended configuration (``None`` when no configuration beats the originals) and
    one paragraph saying why."""

    label: str | None
    sentence: str


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None


def candidates(table: ClassifierTable, summaries: Sequence[MethodSummary]) -> list[Candidate]:
    """Every configuration row of ``table`` with an AUC, with its in-domain-after AUC."""
    after: dict[tuple[str, str | None], float] = {
        row.method_mode: row.auc
        for row in table.rows
        if row.kind == "target-harmonized" and row.method_mode and row.auc is not None
    }
    out = []
    for row in table.rows:
        if row.kind != "config" or row.auc is None:
            continue
        summary = summaries[row.color]
        key = row.method_mode or (summary.rows.method, summary.rows.mode)
        # A method that ran in one mode only is named without it on the target-harmonized row.
        out.append(
            Candidate(
                row.condition,
                row.auc,
                after.get(key, after.get((key[0], None))),
                _mean(summary.ssim_truth),
                summary.ssim_mean,
            )
        )
    return out


def _rank(candidate: Candidate) -> tuple[float, float, float]:
    return (candidate.auc, candidate.ssim_truth or -1.0, candidate.ssim or -1.0)


def _figures(c: Candidate) -> str:
    truth = f", SSIM to the truth image {c.ssim_truth:.3f}" if c.ssim_truth is not None else ""
    return f"AUC {c.auc:.3f}{truth}"


def recommend(table: ClassifierTable, summaries: Sequence[MethodSummary]) -> Choice | None:
    """The guide's rule on this report's figures; ``None`` when no configuration has an AUC."""
    found = candidates(table, summaries)
    if not found:
        return None
    in_domain = _auc(table.row("target"))
    original = _auc(table.row("source"))
    keeping = [c for c in found if c.keeps_target(in_domain)]
    checked = [c for c in found if c.keeps_target(in_domain) is not None]
    context = []
    if original is not None:
        context.append(f"originals {original:.3f}")
    if in_domain is not None:
        context.append(f"in-domain {in_domain:.3f}")
    against = f" ({', '.join(context)})" if context else ""
    if keeping:
        best = max(keeping, key=_rank)
        assert best.in_domain_after is not None
        why = (
            f"it leaves the target site's own images at AUC {best.in_domain_after:.3f}, and "
            f"{len(found) - len(keeping)} of {len(found)} configurations were set aside for "
            f"moving them by more than {NO_OP_TOLERANCE}"
        )
    else:
        best = max(found, key=_rank)
        why = (
            "no configuration was checked on the target site's own images"
            if not checked
            else f"but no configuration keeps the target site's own images within "
            f"{NO_OP_TOLERANCE} of the in-domain AUC: check it on images that already look right"
        )
    if original is not None and best.auc <= original:
        return Choice(
            None,
            f"No configuration beats the originals{against}: the best, {best.label}, reaches "
            f"{_figures(best)}; harmonizing does not help this classifier on this site pair.",
        )
    return Choice(
        best.label,
        f"Recommended for this site pair: {best.label}, {_figures(best)}{against}; {why}.",
    )


def _auc(row: AucRow | None) -> float | None:
    return None if row is None else row.auc


def guide_section(
    table: ClassifierTable | None, summaries: Sequence[MethodSummary]
) -> Section | None:
    """The report's "Recommendation" section (none without a classifier table)."""
    choice = None if table is None else recommend(table, summaries)
    if choice is None:
        return None
    rule = (
        f"The rule (docs/results.md, method guide): among the configurations that keep the "
        f"target site's own images within {NO_OP_TOLERANCE} of the in-domain AUC, the highest "
        "AUC on the source site's images; ties go to the higher SSIM to the truth image, then "
        "to the original."
    )
    return Section("Recommendation", (Paragraph(choice.sentence), Paragraph(rule)))
