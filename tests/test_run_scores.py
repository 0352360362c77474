"""`harmonize run --classifier`: every manifest row carries the classifier's scores of its original
and harmonized image, equal to scoring the decoded images directly, on both executors; the
classifier is part of the skip key; the quick benchmark experiment makes a full report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmonize.classifier import (
    ClassifierConfig,
    load_classifier,
    prepare_classifier_data,
    train_classifier,
)
from harmonize.dicom.decode import decode_dicom
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage
from harmonize.run import RunOptions, run_harmonization

from conftest import SOURCE, TARGET


@pytest.fixture(scope="module")
def classifier_model(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small classifier trained for a few steps on the target site (its scores are what is
    checked here, not its accuracy)."""
    config = ClassifierConfig(
        steps=4, batch_size=4, input_size=64, width=8, log_every=2, validate_every=4,
        checkpoint_every=4, val_fraction=0.25,
    )  # fmt: skip
    data = prepare_classifier_data(
        str(archive / TARGET), str(archive / "labels.parquet"), 64, progress=False, workers=1
    )
    out = str(tmp_path_factory.mktemp("classifier") / "model")
    train_classifier(config, data, out, progress=False)
    return out


def _scored_run(
    archive: Path, model: str, classifier: str | None, out: Path, executor: str, run_id=None
):
    return run_harmonization(
        input_uri=str(archive / SOURCE),
        out_uri=str(out),
        method="histogram",
        model_uri=model,
        classifier_uri=classifier,
        options=RunOptions(
            executor=executor,
            labels_uri=str(archive / "labels.parquet"),
            progress=False,
            run_id=run_id,
        ),
    )


def _rows_of(out: Path, run_id: str) -> pd.DataFrame:
    df = read_manifest(str(out)).to_pandas()
    return df[df.run_id == run_id]


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_scores_in_the_manifest_equal_scoring_the_images_directly(
    executor: str, archive: Path, histogram_model: str, classifier_model: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    if executor == "ray":
        request.getfixturevalue("ray_session")
    summary = _scored_run(archive, histogram_model, classifier_model, tmp_path, executor)
    df = read_manifest(str(tmp_path)).to_pandas()
    n = len(list((archive / SOURCE).glob("*.dcm")))
    assert summary.counts == {"ok": n} and len(df) == n  # count in = count out
    classifier = load_classifier(classifier_model)
    assert (df.classifier_uri == classifier_model).all()
    assert (df.classifier_hash == classifier.model_hash).all()
    originals = [decode_dicom(Path(u).read_bytes()).pixels for u in df.source_uri]
    harmonized = [decode_dicom(Path(u).read_bytes()).pixels for u in df.out_uri]
    # the derived DICOM is quantized to its bit depth: score it as written, and compare the
    # stream's in-memory score to it with the tolerance that quantization allows
    np.testing.assert_allclose(df.score_in, classifier.score(originals), atol=1e-6)
    np.testing.assert_allclose(df.score_out, classifier.score(harmonized), atol=2e-3)
    assert df.score_in.between(0, 1).all() and (df.score_s >= 0).all()
    assert df.label.notna().all()  # labels joined, so the report can compute AUCs


def test_the_classifier_is_part_of_the_skip_key(
    archive: Path, histogram_model: str, classifier_model: str, tmp_path: Path
) -> None:
    _scored_run(archive, histogram_model, None, tmp_path, "local", "1-plain")
    plain = _rows_of(tmp_path, "1-plain")
    assert len(plain) == 8 and plain.score_in.isna().all()
    _scored_run(archive, histogram_model, classifier_model, tmp_path, "local", "2-scored")
    scored = _rows_of(tmp_path, "2-scored")
    assert (scored.status == "ok").all() and scored.score_in.notna().all()  # not skipped
    assert set(scored.out_uri) == set(plain.out_uri)  # same pixels, same derived files
    _scored_run(archive, histogram_model, classifier_model, tmp_path, "local", "3-again")
    again = _rows_of(tmp_path, "3-again")
    assert len(again) == 8 and (again.status == "skipped").all()


def test_quick_experiment_writes_every_section_and_a_manifest_per_method(tmp_path: Path) -> None:
    from harmonize.experiment import ExperimentConfig, run_experiment

    config = ExperimentConfig.quick(n_train=8, n_test=8, matrix=96, executor="local")
    result = run_experiment(config, str(tmp_path), storage=Storage(), echo=lambda _: None)
    names = {Path(uri).name for uri in result.run_uris}
    assert names == {"histogram", "nyul", "cyclegan-curve", "unit-curve", "in-domain"}
    for uri in result.run_uris:
        df = read_manifest(uri).to_pandas()
        assert len(df) == 8 and (df.status == "ok").all() and df.score_out.notna().all()
    markdown = result.report.markdown
    for heading in ("## Summary", "**Table 1.**", "**Table 2.**", "in-domain", "original"):
        assert heading in markdown
    table = result.report.classifier
    assert table is not None
    assert {row.condition for row in table.rows} >= {"histogram", "nyul", "cyclegan", "unit"}
    assert table.row("target") is not None and table.row("source") is not None
    for png in ("histograms.png", "ssim.png", "roc.png", "montage.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
    assert (tmp_path / "experiment.json").exists()
