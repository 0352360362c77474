"""Manifests → one report: a Markdown summary (for stdout), PNG figures and a self-contained HTML
page in an output folder.

Example::

    report = build_report(["out/run-a", "s3://results/run-b"], "out/report")
    print(report.markdown)        # also written as out/report/report.md
    report.html_path              # out/report/report.html, next to the PNGs it shows

Modules: `data` (which rows count, target histograms), `summary` (the numbers per method),
`auc` (ROC AUC with DeLong intervals: Table 2), `sections` (tables and notes), `plots` /
`montage` (figures), `qa` (flagged images, model cards), `document` (Markdown and HTML
rendering).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from harmonize.io.storage import Storage, join
from harmonize.report.auc import ClassifierTable, classifier_table
from harmonize.report.data import (
    ConfigRows,
    TargetHistogram,
    card_target_histogram,
    load_manifests,
    load_summaries,
    select_rows,
    site_target_histogram,
)
from harmonize.report.document import Figure, Section, to_html, to_markdown
from harmonize.report.guide import guide_section
from harmonize.report.montage import read_pairs
from harmonize.report.plots import histogram_figure, montage_figure, roc_figure, ssim_figure
from harmonize.report.qa import find_flagged, models_section, qa_figure, qa_section
from harmonize.report.sections import (
    classifier_section,
    errors_section,
    figures_section,
    inputs_section,
    summary_section,
)
from harmonize.report.summary import MethodSummary, config_label, summarize

__all__ = ["ClassifierTable", "MethodSummary", "Report", "build_report"]

TITLE = "Harmonization report"
HTML_FILE, MARKDOWN_FILE = "report.html", "report.md"
HISTOGRAM_PNG, SSIM_PNG, MONTAGE_PNG = "histograms.png", "ssim.png", "montage.png"
ROC_PNG, QA_PNG = "roc.png", "qa.png"


@dataclass(frozen=True)
class Report:
    """What `build_report` wrote and found.

    Attributes:
        markdown: the report as Markdown (print it; figures are linked by relative path).
        html_path: URI of ``report.html``; ``markdown_path`` of ``report.md``, in the same folder.
        figure_paths: URIs of the PNGs written (some are left out when there is nothing to draw).
        summaries: the numbers of each harmonizer configuration, in table order.
        classifier: the ROC AUC table (Table 2); ``None`` when no row carries a classifier score.
    """

    markdown: str
    html_path: str
    markdown_path: str
    figure_paths: tuple[str, ...]
    summaries: tuple[MethodSummary, ...]
    classifier: ClassifierTable | None = None


def _target_for(
    rows: ConfigRows,
    manifest: pd.DataFrame,
    storage: Storage,
    target_site: str | None,
    cards: dict[str | None, TargetHistogram],
) -> TargetHistogram:
    if rows.model_uri not in cards:
        cards[rows.model_uri] = card_target_histogram(rows.model_uri, storage)
    card = cards[rows.model_uri]
    if card.values is not None:
        return card
    if target_site is None:
        return TargetHistogram(None, f"{card.source}, and no target site was named")
    site = site_target_histogram(manifest, target_site)
    if site.values is not None:
        return site
    return TargetHistogram(None, f"{card.source}, and {site.source}")


def build_report(
    manifest_uris: Sequence[str],
    out_dir: str,
    storage: Storage | None = None,
    *,
    target_site: str | None = None,
    extra_sections: Sequence[Section] = (),
) -> Report:
    """Read the manifests under ``manifest_uris`` and write the report into ``out_dir``.

    Args:
        manifest_uris: run output prefixes (holding ``manifest/run=*/part-*.parquet``) or
            manifest folders, local or s3://; their rows are concatenated.
        out_dir: folder (or s3:// prefix) for report.html, report.md and the PNGs.
        storage: how to reach s3:// URIs (manifests, model cards, DICOM images).
        target_site: the target site's name in the manifest's ``site`` column. Its rows are left
            out of the method table, its images' mean ``hist_in`` stands in for the target
            histogram of a model whose card has none, and its images' ``score_in`` give the
            in-domain AUC; the other sites' images are the source.
        extra_sections: sections measured elsewhere (the experiment's site detector), placed
            after the classifier's.

    Raises:
        HarmonizeError: there are no manifest rows under any of the URIs.
    """
    store = storage or Storage()
    manifest = load_manifests(manifest_uris, store)
    groups = select_rows(manifest, exclude_site=target_site)
    per_method = Counter(g.method for g in groups)
    cards: dict[str | None, TargetHistogram] = {}
    summaries = tuple(
        summarize(
            g,
            config_label(g, per_method[g.method] > 1),
            _target_for(g, manifest, store, target_site, cards),
        )
        for g in groups
    )

    classifier = classifier_table(manifest, summaries, target_site)

    figures, figure_paths = [], []
    pairs, figure_notes = read_pairs(summaries, store)
    drawings = [
        (
            HISTOGRAM_PNG,
            histogram_figure(summaries),
            "Mean 64-bin histograms: source (original), target and harmonized, per method.",
        ),
        (SSIM_PNG, ssim_figure(summaries), "SSIM(original, harmonized) per image, per method."),
        (
            MONTAGE_PNG,
            montage_figure(pairs),
            "A few images per method: original | harmonized (downsampled).",
        ),
    ]
    if classifier is not None:
        drawings.append(
            (
                ROC_PNG,
                roc_figure(classifier),
                "ROC of the target-site classifier: original (source), in-domain (target) and "
                "harmonized images per method, AUC in the legend.",
            )
        )
    for name, png, caption in drawings:
        if png is None:
            figure_notes.append(f"{name}: nothing to draw")
            continue
        uri = join(out_dir, name)
        store.write(uri, png)
        figures.append(Figure(name, caption))
        figure_paths.append(uri)

    findings = find_flagged(summaries)
    qa_png, qa_notes = qa_figure(findings, store)
    qa_drawing = None
    if qa_png is not None:
        store.write(join(out_dir, QA_PNG), qa_png)
        figure_paths.append(join(out_dir, QA_PNG))
        qa_drawing = Figure(
            QA_PNG, "Flagged images, numbered as in the table: original | harmonized."
        )

    sections: list[Section | None] = [
        summary_section(summaries, target_site, findings.count_line()),
        errors_section(summaries),
        qa_section(findings, qa_drawing, qa_notes),
        classifier_section(classifier),
        guide_section(classifier, summaries),
        models_section(summaries, store),
        *extra_sections,
        figures_section(figures, figure_notes),
        inputs_section(manifest, manifest_uris, load_summaries(manifest_uris, store)),
    ]
    present = [s for s in sections if s is not None]
    title = f"{TITLE} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    markdown = to_markdown(title, present)
    html_path, markdown_path = join(out_dir, HTML_FILE), join(out_dir, MARKDOWN_FILE)
    store.write_text(markdown_path, markdown)
    store.write_text(html_path, to_html(title, present))
    return Report(markdown, html_path, markdown_path, tuple(figure_paths), summaries, classifier)
