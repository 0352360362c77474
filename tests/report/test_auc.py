"""Table 2: ROC AUC with DeLong intervals, joined on image_id, equal to scikit-learn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from harmonize.metrics.roc import auc_ci_delong, auc_difference_delong
from harmonize.report import build_report

from report_samples import (
    histogram,
    make_row,
    section_rows,
    write_manifest,
)

SOURCE_IDS = [f"s{k:03d}" for k in range(80)]
TARGET_IDS = [f"t{k:03d}" for k in range(50)]
DIFFERING, NO_LABEL_ANYWHERE, NO_SCORE_OUT, ERROR_IN_A = "s005", "s076", "s078", "s079"


def classifier_truth(seed: int = 11) -> dict[str, Any]:
    """Labels and scores per image_id, as the classifier and the labels table would give them."""
    rng = np.random.default_rng(seed)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    label = {i: int(rng.random() < 0.4) for i in SOURCE_IDS + TARGET_IDS}
    y_src = np.array([label[i] for i in SOURCE_IDS])
    y_tgt = np.array([label[i] for i in TARGET_IDS])
    return {
        "label": label,
        "score_in": dict(zip(SOURCE_IDS, sigmoid(0.8 * y_src + rng.normal(0, 1, 80)), strict=True))
        | dict(zip(TARGET_IDS, sigmoid(2.5 * y_tgt + rng.normal(0, 1, 50)), strict=True)),
        "histogram": dict(zip(SOURCE_IDS, sigmoid(2.0 * y_src + rng.normal(0, 1, 80)), strict=True))
        | dict(zip(TARGET_IDS, sigmoid(2.5 * y_tgt + rng.normal(0, 1, 50)), strict=True)),
        "nyul": dict(zip(SOURCE_IDS, sigmoid(1.0 * y_src + rng.normal(0, 1, 80)), strict=True)),
        "newer_score_in": 0.05 + 0.9 * rng.random(),  # run-b's differing score_in of DIFFERING
    }


def write_classifier_manifests(out: Path, truth: dict[str, Any], shuffle: int | None) -> list[str]:
    """Three manifests: run-a (histogram, source + target images; some labels missing, one error,
    one row without score_out), run-b (nyul, newer; holds the missing labels, one differing
    score_in), run-c (histogram re-run: skipped rows only). ``shuffle`` permutes each manifest's
    rows differently."""
    label, score_in = truth["label"], truth["score_in"]
    rng = np.random.default_rng(12)
    run_a = []
    for k, i in enumerate(SOURCE_IDS + TARGET_IDS):
        row = make_row(
            i,
            "run-a",
            k,
            site="mc-like" if i.startswith("s") else "shenzhen-like",
            label=None if k < 20 or i == NO_LABEL_ANYWHERE else label[i],
            ssim=0.9,
            hist_in=histogram(rng, 0.3),
            hist_out=histogram(rng, 0.5),
            score_in=score_in[i],
            score_out=truth["histogram"][i],
        )
        if i == ERROR_IN_A:
            row.update(status="error", error="harmonize: ValueError: bad", score_in=None)
            row.update(score_out=None, ssim=None)
        if i == NO_SCORE_OUT:
            row["score_out"] = None
        run_a.append(row)
    run_b = [
        make_row(
            i,
            "run-b",
            200 + k,
            method="nyul",
            config_hash="cfg-n",
            label=None if i in (NO_LABEL_ANYWHERE, "s077") else label[i],
            ssim=0.8,
            hist_in=histogram(rng, 0.3),
            hist_out=histogram(rng, 0.45),
            score_in=truth["newer_score_in"] if i == DIFFERING else score_in[i] + 1e-9,
            score_out=truth["nyul"][i],
        )
        for k, i in enumerate(SOURCE_IDS)
    ]
    run_c = [make_row(i, "run-c", 300 + k, status="skipped") for k, i in enumerate(SOURCE_IDS[:30])]
    uris = []
    for name, rows in (("a", run_a), ("b", run_b), ("c", run_c)):
        if shuffle is not None:
            order = np.random.default_rng(shuffle + ord(name)).permutation(len(rows))
            rows = [rows[j] for j in order]
        write_manifest(out / name, f"run-{name}", rows)
        uris.append(str(out / name))
    return uris


def expected_auc(truth: dict[str, Any], ids: list[str], scores: dict[str, float]) -> float:
    return float(roc_auc_score([truth["label"][i] for i in ids], [scores[i] for i in ids]))


def test_table_2_equals_sklearn_on_the_rows_joined_by_image_id(tmp_path: Path) -> None:
    truth = classifier_truth()
    uris = write_classifier_manifests(tmp_path / "runs", truth, shuffle=None)
    report = build_report(uris, str(tmp_path / "report"), target_site="shenzhen-like")
    table = report.classifier
    assert table is not None
    by_name = {r.condition: r for r in table.rows}
    assert list(by_name) == [
        'in-domain (target site "shenzhen-like")',
        "in-domain, harmonized by histogram",  # run-a passed the target images through it
        'original (source site "mc-like")',
        "histogram",
        "nyul",
    ]
    original_ids = [i for i in SOURCE_IDS if i != NO_LABEL_ANYWHERE]  # s079: ok in run-b
    original_scores = truth["score_in"] | {DIFFERING: truth["newer_score_in"]}  # newest row
    histogram_ids = [i for i in original_ids if i not in (NO_SCORE_OUT, ERROR_IN_A)]
    expected = {
        'in-domain (target site "shenzhen-like")': (TARGET_IDS, truth["score_in"]),
        "in-domain, harmonized by histogram": (TARGET_IDS, truth["histogram"]),
        'original (source site "mc-like")': (original_ids, original_scores),
        "histogram": (histogram_ids, truth["histogram"]),
        "nyul": (original_ids, truth["nyul"]),
    }
    for name, (ids, scores) in expected.items():
        row = by_name[name]
        assert list(row.data["image_id"]) == ids
        assert list(row.data["label"]) == [truth["label"][i] for i in ids]
        assert row.auc == pytest.approx(expected_auc(truth, ids, scores), abs=1e-7)
        labels = [truth["label"][i] for i in ids]
        _, low, high = auc_ci_delong(labels, [scores[i] for i in ids])
        assert row.ci is not None and row.ci == pytest.approx((low, high), abs=1e-7)
        assert row.auc is not None and row.ci[0] < row.auc < row.ci[1]
        assert row.roc is not None
        fpr, tpr, _ = sk_roc_curve(labels, [scores[i] for i in ids])
        np.testing.assert_allclose(row.roc[0], fpr)
        np.testing.assert_allclose(row.roc[1], tpr)
    # Paired change: score_out vs the original score_in of the same images.
    for name, ids in (("histogram", histogram_ids), ("nyul", original_ids)):
        labels = [truth["label"][i] for i in ids]
        reference = auc_difference_delong(
            labels, [truth[name][i] for i in ids], [original_scores[i] for i in ids]
        )
        assert by_name[name].n_paired == len(ids)
        assert by_name[name].change == pytest.approx(reference, abs=1e-7)
    hist, change = by_name["histogram"], by_name["histogram"].change
    assert change is not None and hist.ci is not None
    assert change.diff > 0 and change.p_value < 0.05  # the harmonized scores separate better

    # The Markdown table shows the same numbers.
    lines = section_rows(report.markdown, "Classifier ROC AUC")
    assert lines["histogram"] == [
        "histogram",
        "`score_out`",
        f"{len(histogram_ids)} ({hist.n_pos} / {hist.n_neg})",
        f"{hist.auc:.4f}",
        f"[{hist.ci[0]:.4f}, {hist.ci[1]:.4f}]",
        f"{change.diff:+.4f}",
        f"[{change.low:+.4f}, {change.high:+.4f}]",
        "< 0.001" if change.p_value < 0.001 else f"{change.p_value:.3f}",
    ]
    assert lines['original (source site "mc-like")'][5] == "(reference)"
    section = report.markdown.split("## Classifier ROC AUC", 1)[1].split("\n## ", 1)[0]
    assert "**Table 2.**" in section
    assert "1 image(s) have `score_in` values that differ by more than 1e-06" in section
    assert "e.g. `s005`" in section
    assert "histogram: left out 1 without an `ok` row, 1 without a 0/1 label, " in section
    assert "1 without `score_out`" in section
    assert "histogram: the change is measured on the 77 images" in section
    assert "**Table 1.**" in report.markdown.split("## Summary", 1)[1].split("\n## ", 1)[0]

    # roc.png is written and shown; the HTML holds the section and its table.
    assert [Path(p).name for p in report.figure_paths if p.endswith("roc.png")] == ["roc.png"]
    with Image.open(tmp_path / "report" / "roc.png") as png:
        png.verify()
        assert png.format == "PNG"
    with Image.open(tmp_path / "report" / "histograms.png") as png:
        assert png.width > 2.8 * png.height  # overlay + one panel per method, in one row
    html = Path(report.html_path).read_text()
    assert "<h2>Classifier ROC AUC</h2>" in html and 'src="roc.png"' in html
    assert "<th>ΔAUC vs original</th>" in html
    assert f'<td class="num">{hist.auc:.4f}</td>' in html


def test_table_2_does_not_depend_on_row_order(tmp_path: Path) -> None:
    truth = classifier_truth()
    reports = [
        build_report(
            write_classifier_manifests(tmp_path / f"runs{k}", truth, shuffle=shuffle),
            str(tmp_path / f"report{k}"),
            target_site="shenzhen-like",
        )
        for k, shuffle in enumerate((None, 1, 2))
    ]
    tables = [r.classifier for r in reports]
    assert all(t is not None for t in tables)
    first = tables[0]
    assert first is not None
    for table in tables[1:]:
        assert table is not None and table.notes == first.notes
        for ours, theirs in zip(table.rows, first.rows, strict=True):
            assert (ours.condition, ours.auc, ours.ci, ours.change, ours.n_paired) == (
                theirs.condition,
                theirs.auc,
                theirs.ci,
                theirs.change,
                theirs.n_paired,
            )
            assert ours.data.equals(theirs.data)
    sections = [
        r.markdown.split("## Classifier ROC AUC", 1)[1].split("\n## ", 1)[0] for r in reports
    ]
    assert sections[0] == sections[1] == sections[2]
    assert len(section_rows(reports[0].markdown, "Classifier ROC AUC")) == 5


def test_table_2_without_target_site_and_with_one_class(tmp_path: Path) -> None:
    rows = [
        make_row(f"s{k}", "r", k, label=k % 2, score_in=0.1 * k + 0.05 * (k % 2), score_out=0.5)
        for k in range(8)
    ] + [
        make_row(f"t{k}", "r", 10 + k, site="shenzhen-like", label=1, score_in=0.9)
        for k in range(3)
    ] + [
        make_row(f"s{k}", "r2", 20 + k, method="nyul", config_hash="n", label=1, score_out=0.3)
        for k in range(1, 8, 2)  # only the positive images
    ]  # fmt: skip
    write_manifest(tmp_path / "out", "r", rows)
    report = build_report([str(tmp_path / "out")], str(tmp_path / "report"))
    table = report.classifier
    assert table is not None
    assert [r.condition for r in table.rows] == ["original (all sites)", "histogram", "nyul"]
    original, histogram, nyul = table.rows
    ids = [f"s{k}" for k in range(8)] + [f"t{k}" for k in range(3)]
    labels = [k % 2 for k in range(8)] + [1, 1, 1]
    scores = [0.1 * k + 0.05 * (k % 2) for k in range(8)] + [0.9] * 3
    assert list(original.data["image_id"]) == sorted(ids)
    assert original.auc == pytest.approx(roc_auc_score(labels, scores))
    assert histogram.auc == 0.5  # every score_out ties
    # paired on the 8 source images (the target images have no score_out): 0.5 - 10/16
    assert histogram.n_paired == 8 and histogram.change is not None
    assert histogram.change.diff == pytest.approx(0.5 - roc_auc_score(labels[:8], scores[:8]))
    assert histogram.change.diff == pytest.approx(-0.125)
    assert nyul.auc is None and nyul.ci is None and nyul.change is None  # positives only
    lines = section_rows(report.markdown, "Classifier ROC AUC")
    assert lines["nyul"][2:] == ["4 (4 / 0)", "n/a", "n/a", "n/a", "n/a", "n/a"]
    assert "No target site named" in report.markdown
    assert "nyul: no AUC, its images are all of one class." in report.markdown
    assert Path(tmp_path / "report" / "roc.png").is_file()
