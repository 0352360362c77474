"""The report's QA: the images a person should look at (each with its flags' reasons and a
before/after thumbnail), and what each model's card says it is for and where it fails.

Per image, the run's own ``qa_flags`` (``harmonize/run/qa.py``) plus ``ssim_outlier``, which
needs the whole configuration's rows: SSIM far below the configuration's distribution (robust
z-score below -4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harmonize.io.storage import Storage
from harmonize.report.data import read_card
from harmonize.report.document import BulletList, Figure, Paragraph, Section, Table
from harmonize.report.montage import ImageReader
from harmonize.report.plots import montage_figure
from harmonize.report.summary import MethodSummary
from harmonize.run.qa import REASONS, ssim_outliers

MAX_LISTED = 50  # flagged images in the table
MAX_DRAWN = 12  # flagged images in the thumbnail figure


@dataclass(frozen=True)
class FlaggedImage:
    """One flagged ok row of one configuration."""

    label: str  # the configuration's
    image_id: str
    source_uri: str
    out_uri: str | None
    codes: tuple[str, ...]
    ssim: float | None
    score_in: float | None
    score_out: float | None


def _number(value: object) -> float | None:
    """A finite number of a manifest cell, or None (null, NaN)."""
    if isinstance(value, int | float | np.number) and np.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class QaFindings:
    """The flagged images of every configuration, and how many ok rows were looked at."""

    flagged: tuple[FlaggedImage, ...]
    n_ok: dict[str, int]  # per configuration label
    n_flagged: dict[str, int]
    n_unchecked: int  # ok rows written before runs had qa_flags (only ssim_outlier applies)

    def count_line(self) -> str:
        """``QA: 3 of 8 ok images flagged`` (per configuration when there are several)."""
        total = f"QA: {len(self.flagged)} of {sum(self.n_ok.values())} ok images flagged"
        if len(self.n_ok) > 1:
            total += (
                " ("
                + ", ".join(
                    f"{label} {self.n_flagged[label]} of {n}" for label, n in self.n_ok.items()
                )
                + ")"
            )
        return total + "; see the QA section."


def find_flagged(summaries: Sequence[MethodSummary]) -> QaFindings:
    """The ok rows of each configuration that carry a QA flag, the run's or ``ssim_outlier``."""
    flagged, n_ok, n_flagged, unchecked = [], {}, {}, 0
    for s in summaries:
        ok = s.rows.ok
        outliers = ssim_outliers(ok["ssim"].to_numpy(dtype=np.float64, na_value=np.nan))
        n_ok[s.label], n_flagged[s.label] = len(ok), 0
        for row, outlier in zip(ok.itertuples(), outliers, strict=True):
            stored = row.qa_flags
            if stored is None:
                unchecked += 1
            codes = {str(c) for c in (stored if stored is not None else ())}
            if outlier:
                codes.add("ssim_outlier")
            if not codes:
                continue
            n_flagged[s.label] += 1
            flagged.append(
                FlaggedImage(
                    label=s.label,
                    image_id=str(row.image_id),
                    source_uri=str(row.source_uri),
                    out_uri=row.out_uri if isinstance(row.out_uri, str) else None,
                    codes=tuple(sorted(codes, key=_code_order)),
                    ssim=_number(row.ssim),
                    score_in=_number(row.score_in),
                    score_out=_number(row.score_out),
                )
            )
    return QaFindings(tuple(flagged), n_ok, n_flagged, unchecked)


def _code_order(code: str) -> tuple[int, str]:
    order = list(REASONS)
    return (order.index(code) if code in order else len(order), code)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def qa_figure(
    findings: QaFindings, storage: Storage, max_drawn: int = MAX_DRAWN
) -> tuple[bytes | None, list[str]]:
    """Before/after thumbnails of the first ``max_drawn`` flagged images (PNG), numbered as in
    the QA table, and notes on images that could not be read."""
    read = ImageReader(storage)
    rows = []
    for number, image in enumerate(findings.flagged[:max_drawn], start=1):
        before, after = read(image.source_uri), read(image.out_uri)
        if before is not None and after is not None:
            title = f"{number}. {image.label}: {', '.join(image.codes)}"
            rows.append((title, [(image.image_id, before, after)]))
    notes = [f"QA thumbnails: left out unreadable {f}" for f in read.failures[:5]]
    return montage_figure(rows), notes


def qa_section(findings: QaFindings, figure: Figure | None, notes: Sequence[str]) -> Section:
    """The flagged images (up to MAX_LISTED), what each flag means, and their thumbnails."""
    intro = Paragraph(
        findings.count_line().removesuffix("; see the QA section.") + ". Each image below "
        "carries the QA codes of its run (`qa_flags` in the manifest) and `ssim_outlier` when "
        "its SSIM is far below its configuration's distribution."
    )
    unchecked = Paragraph(
        f"{findings.n_unchecked} ok rows were written before runs recorded QA flags: only the "
        "SSIM outlier check applies to them."
    )
    if not findings.flagged:
        return Section("QA", (intro, unchecked) if findings.n_unchecked else (intro,))
    shown = findings.flagged[:MAX_LISTED]
    table = Table(
        ("#", "method", "source", "flags", "SSIM", "score in → out"),
        tuple(
            (
                str(number),
                image.label,
                f"`{image.source_uri}`",
                ", ".join(image.codes),
                _fmt(image.ssim),
                "n/a"
                if image.score_in is None or image.score_out is None
                else f"{image.score_in:.3f} → {image.score_out:.3f}",
            )
            for number, image in enumerate(shown, start=1)
        ),
        (True, False, False, False, True, True),
    )
    blocks: list[Paragraph | Table | BulletList | Figure] = [intro, table]
    if len(findings.flagged) > len(shown):
        blocks.append(Paragraph(f"… and {len(findings.flagged) - len(shown)} more flagged images."))
    present = sorted({c for image in findings.flagged for c in image.codes}, key=_code_order)
    blocks.append(BulletList(tuple(f"`{code}`: {REASONS.get(code, code)}" for code in present)))
    if findings.n_unchecked:
        blocks.append(unchecked)
    if figure is not None:
        blocks.append(figure)
    if notes:
        blocks.append(BulletList(tuple(notes)))
    return Section("QA", tuple(blocks))


def _validation_line(validation: Mapping[str, Any]) -> str:
    parts = []
    if "n_images" in validation:
        what = validation.get("images", "source")
        parts.append(f"{validation['n_images']} {what} images")
    if "ssim_mean" in validation:
        parts.append(f"SSIM {validation['ssim_mean']:.3f} ± {validation.get('ssim_std', 0):.3f}")
    if "w1_to_target_before" in validation and "w1_to_target_after" in validation:
        before, after = validation["w1_to_target_before"], validation["w1_to_target_after"]
        parts.append(f"W1 to target {before:.3f} → {after:.3f}")
    return "; ".join(parts) if parts else "none recorded"


def models_section(summaries: Sequence[MethodSummary], storage: Storage) -> Section | None:
    """What each model's card says: sites, training data, validation, known failure modes."""
    seen: set[str] = set()
    items = []
    for s in summaries:
        uri = s.rows.model_uri
        if uri is None or uri in seen:
            continue
        seen.add(uri)
        card, where = read_card(uri, storage)
        if card is None:
            items.append(f"**{s.label}** (`{uri}`): {where}.")
            continue
        use = card.get("intended_use") or {}
        if not isinstance(use, dict) or not use:
            items.append(f"**{s.label}** (`{uri}`): the card states no intended use.")
            continue
        data = use.get("training_data") or {}
        counts = ", ".join(f"{k} {v}" for k, v in (data.get("n_images") or {}).items())
        validation = card.get("validation")
        failures = "; ".join(str(f) for f in use.get("known_failure_modes") or ()) or "none stated"
        items.append(
            f"**{s.label}** (`{uri}`): source site {use.get('source_site')}, target site "
            f"{use.get('target_site')}; trained on {counts or 'n/a'} images; validation: "
            f"{_validation_line(validation) if isinstance(validation, dict) else 'none recorded'}"
            f". Known failure modes: {failures}."
        )
    if not items:
        return None
    return Section("Models", (BulletList(tuple(items)),))
