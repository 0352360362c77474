"""The quick benchmark experiment makes a full report: a manifest per method with every row ok
and scored, every table and figure, and its record."""

from __future__ import annotations

import json
from pathlib import Path

from harmonize.distributed.stream import make_executor
from harmonize.experiments.config import ExperimentConfig
from harmonize.experiments.experiment import run_experiment
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage


def test_quick_experiment_writes_every_section_and_a_manifest_per_method(tmp_path: Path) -> None:
    config = ExperimentConfig.quick(n_train=8, n_test=8, matrix=96, executor="local")
    result = run_experiment(
        config, str(tmp_path), executors=make_executor, storage=Storage(), echo=lambda _: None
    )
    names = {Path(uri).name for uri in result.run_uris}
    assert names == {"histogram", "nyul", "cyclegan-curve", "unit-curve", "in-domain"}
    for uri in result.run_uris:
        df = read_manifest(uri).to_pandas()
        assert len(df) == 8 and (df.status == "ok").all() and df.score_out.notna().all()
        # Source images are measured against their paired truth; target images are their own.
        has_truth = Path(uri).name != "in-domain"
        assert df.ssim_truth.notna().all() == has_truth and df.psnr_truth.notna().all() == has_truth
    markdown = result.report.markdown
    headings = (
        "## Summary",
        "**Table 1.**",
        "**Table 2.**",
        "in-domain",
        "original",
        "SSIM vs truth",
    )
    for heading in headings:
        assert heading in markdown
    table = result.report.classifier
    assert table is not None
    assert {row.condition for row in table.rows} >= {"histogram", "nyul", "cyclegan", "unit"}
    assert table.row("target") is not None and table.row("source") is not None
    for png in ("histograms.png", "ssim.png", "roc.png", "montage.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    assert (tmp_path / "experiment.json").exists()
    record = json.loads((tmp_path / "experiment.json").read_text())
    site = record["site_detector"]["auc"]
    assert set(site) == {"original", "histogram", "nyul", "cyclegan-curve", "unit-curve"}
    assert all(0.0 <= auc <= 1.0 for auc in site.values())
    assert "**Table 3.**" in markdown and f"| original | {site['original']:.3f} |" in markdown
