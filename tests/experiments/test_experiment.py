"""The quick benchmark experiment makes a full report per shift family (a manifest per method
with every row ok and scored, every table and figure) and its record, on synthetic sites and on
a user's own archive (written by synth, then passed as user data)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harmonize.distributed.stream import make_executor
from harmonize.experiments.config import ExperimentConfig
from harmonize.experiments.experiment import run_experiment
from harmonize.experiments.split import split_of
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage
from harmonize.synth import synthesize_archive

from conftest import SOURCE, TARGET, run_cli

FAMILIES = (SOURCE, "raw-dr")


def _runs(record: dict, family: str, key: str = "runs") -> dict[str, str]:
    return {Path(uri).name: uri for uri in record["families"][family][key]}


def test_quick_experiment_writes_a_report_per_family(tmp_path: Path) -> None:
    config = ExperimentConfig.quick(
        n_train=8, n_test=8, matrix=96, executor="local", source_sites=FAMILIES
    )
    result = run_experiment(
        config, str(tmp_path), executors=make_executor, storage=Storage(), echo=lambda _: None
    )
    record = json.loads((tmp_path / "experiment.json").read_text())
    assert [f.source for f in result.families] == list(FAMILIES) == list(record["families"])
    for family in result.families:
        runs = _runs(record, family.source)
        assert set(runs) == {
            "histogram", "nyul", "multiscale", "cyclegan-curve", "unit-curve", "cut-curve"
        }  # fmt: skip
        in_domain = _runs(record, family.source, "in_domain_runs")
        assert set(in_domain) == set(runs)  # the target's images through every method too
        for uri in in_domain.values():
            df = read_manifest(uri).to_pandas()
            assert len(df) == 8 and (df.site == TARGET).all() and (df.status == "ok").all()
            assert df.ssim_truth.isna().all()  # a target image is its own truth
        assert all(Path(uri).parent.name == family.source for uri in runs.values())
        for uri in runs.values():
            df = read_manifest(uri).to_pandas()
            assert len(df) == 8 and (df.status == "ok").all() and df.score_out.notna().all()
            assert (df.site == family.source).all()
            # Source images are measured against their paired truth.
            assert df.ssim_truth.notna().all() and df.psnr_truth.notna().all()
        markdown = family.report.markdown
        for heading in ("## Summary", "**Table 1.**", "**Table 2.**", "SSIM vs truth"):
            assert heading in markdown
        assert f'original (source site "{family.source}")' in markdown
        assert f'in-domain (target site "{TARGET}")' in markdown
        for method in ("histogram", "nyul", "multiscale", "cyclegan", "unit", "cut"):
            assert f"in-domain, harmonized by {method}" in markdown
        table = family.report.classifier
        assert table is not None
        methods = {"histogram", "nyul", "multiscale", "cyclegan", "unit", "cut"}
        assert {row.condition for row in table.rows} >= methods
        report_dir = tmp_path / "report" / family.source
        for png in ("histograms.png", "ssim.png", "roc.png", "montage.png"):
            assert (report_dir / png).stat().st_size > 1000
        site = record["families"][family.source]["site_detector"]["auc"]
        assert set(site) == {"original", *runs}
        assert all(0.0 <= auc <= 1.0 for auc in site.values())
        assert "**Table 3.**" in markdown and f"| original | {site['original']:.3f} |" in markdown
        # Each family's detector learnt its own source site against the target, no other.
        detector = pd.read_parquet(
            tmp_path / "models" / family.source / "site-detector" / "site-labels.parquet"
        )
        assert set(detector.site) == {TARGET, family.source}
        # The method guide's rule, on the family's own figures, in experiment.json and report.
        recommended = record["families"][family.source]["recommendation"]
        assert recommended is not None and recommended["why"] in markdown
        assert recommended["configuration"] in {None, *(r.condition for r in table.rows)}


@pytest.mark.slow
def test_quick_experiment_on_a_users_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = tmp_path / "hospital"
    synthesize_archive(
        str(user), [TARGET, SOURCE], 16, seed=11, matrix=96, progress=False, truth_site=TARGET
    )
    out = tmp_path / "experiment"
    args = ["--source", str(user / SOURCE), "--target", str(user / TARGET), "--labels", str(user)]
    args += ["--method", "histogram", "--method", "cyclegan", "--executor", "local"]
    assert run_cli("experiment", "--out", str(out), "--quick", *args) == 0
    printed = capsys.readouterr().out
    assert f"## {SOURCE} → {TARGET}" in printed and "**Table 3.**" in printed
    record = json.loads((out / "experiment.json").read_text())
    assert record["config"]["source_uri"] == str(user / SOURCE)
    labels = pd.read_parquet(user / "labels.parquet")
    test_ids = {i for i in labels.image_id if split_of(i, 0.4) == "test"}
    for name, uri in _runs(record, SOURCE).items():
        df = read_manifest(uri).to_pandas()
        source_test = labels[(labels.site == SOURCE) & labels.image_id.isin(test_ids)]
        assert sorted(df.image_id) == sorted(source_test.image_id), name  # the hash's test split
        assert (df.status == "ok").all() and df.ssim_truth.notna().all()
    target_test = labels[(labels.site == TARGET) & labels.image_id.isin(test_ids)]
    for uri in _runs(record, SOURCE, "in_domain_runs").values():
        in_domain = read_manifest(uri).to_pandas()
        assert sorted(in_domain.image_id) == sorted(target_test.image_id)


@pytest.mark.parametrize(
    ("given", "missing"),
    [(["--source", "a"], "--target, --labels"), (["--truth", "t"], "--source, --target, --labels")],
)
def test_a_users_archive_needs_source_target_and_labels(
    given: list[str], missing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("experiment", "--out", str(tmp_path), *given) == 2
    err = capsys.readouterr().err
    assert "--source, --target and --labels go together" in err and f"missing: {missing}" in err


@pytest.mark.parametrize("flag", [["--n-train", "8"], ["--source-profile", "raw-dr"]])
def test_synthetic_flags_are_refused_with_a_users_archive(
    flag: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--source", "a", "--target", "b", "--labels", "l.csv", *flag]
    assert run_cli("experiment", "--out", str(tmp_path), *args) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]} describe synthetic sites; leave them out with --source" in err
