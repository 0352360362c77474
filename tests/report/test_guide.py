"""The method guide's rule on a report's own figures: the best AUC among the configurations that
leave the target site's own images alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from harmonize.report import build_report
from harmonize.report.guide import NO_OP_TOLERANCE, recommend

from report_samples import make_row, write_manifest

N = 120


def _scores(labels: np.ndarray, separation: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(separation * labels + rng.normal(0, 1, labels.size))))


def _write(out: Path, configs: dict[tuple[str, str], tuple[float, float]]) -> list[str]:
    """One manifest per configuration: its source rows (score_out of the given separation) and
    its target rows (score_out: the in-domain scores, moved by the given noise)."""
    rng = np.random.default_rng(0)
    labels = (rng.random(N) < 0.5).astype(int)
    source_in, target_in = _scores(labels, 0.5, 1), _scores(labels, 3.0, 2)
    uris = []
    for k, ((method, mode), (separation, noise)) in enumerate(configs.items()):
        source_out = _scores(labels, separation, 10 + k)
        target_out = target_in + np.random.default_rng(20 + k).normal(0, noise, N)
        rows = []
        for i in range(N):
            common = {"method": method, "mode": mode, "config_hash": f"c{k}", "label": labels[i]}
            rows.append(make_row(f"s{i}", f"r{k}", i, score_in=source_in[i],
                                 score_out=source_out[i], **common))  # fmt: skip
            rows.append(make_row(f"t{i}", f"r{k}", i, site="target", score_in=target_in[i],
                                 score_out=target_out[i], **common))  # fmt: skip
        uri = str(out / f"run-{k}")
        write_manifest(uri, f"r{k}", rows)
        uris.append(uri)
    return uris


def test_the_best_auc_among_configurations_that_keep_the_target_wins(tmp_path: Path) -> None:
    configs = {
        ("histogram", "direct"): (4.0, 0.8),  # the best AUC, but it moves the target's own images
        ("cyclegan", "curve"): (2.5, 0.0),
        ("cyclegan", "local"): (1.5, 0.0),
    }
    uris = _write(tmp_path, configs)
    report = build_report(uris, str(tmp_path / "report"), target_site="target")
    assert report.classifier is not None
    choice = recommend(report.classifier, report.summaries)
    assert choice is not None
    rows = {r.condition: r for r in report.classifier.rows}
    in_domain = report.classifier.row("target").auc
    moved = rows["in-domain, harmonized by histogram"].auc
    assert abs(moved - in_domain) > NO_OP_TOLERANCE  # the planted harm is real
    by_auc = sorted((r for r in report.classifier.rows if r.kind == "config"), key=lambda r: -r.auc)
    assert by_auc[0].condition.startswith("histogram")
    assert choice.label is not None and choice.label.startswith("cyclegan (curve")
    assert "1 of 3 configurations were set aside" in choice.sentence
    curve = next(r for r in by_auc if r.condition == choice.label)
    labels = curve.data["label"].to_numpy()
    assert curve.auc == roc_auc_score(labels, curve.data["score"].to_numpy())
    assert f"AUC {curve.auc:.3f}" in choice.sentence
    assert "Recommended for this site pair" in report.markdown


def test_nothing_is_recommended_when_no_configuration_beats_the_originals(tmp_path: Path) -> None:
    uris = _write(tmp_path, {("nyul", "direct"): (0.0, 0.0)})
    report = build_report(uris, str(tmp_path / "report"), target_site="target")
    assert report.classifier is not None
    choice = recommend(report.classifier, report.summaries)
    assert choice is not None and choice.label is None
    assert choice.sentence.startswith("No configuration beats the originals")
