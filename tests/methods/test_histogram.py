"""Histogram matching against scikit-image and its invariants; the classical-model base."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.exposure import match_histograms

from harmonize.errors import ConfigError, ModelError
from harmonize.methods.histogram import HistogramMatching, image_quantiles
from harmonize.metrics.histogram import intensity_histogram, wasserstein_1d
from harmonize.models.registry import create_harmonizer, load_model


def test_histogram_matching_equals_skimage_for_a_single_reference(sites) -> None:
    target, source = sites
    ref = target[0]
    ours = HistogramMatching().fit([ref]).transform(source[0])
    theirs = match_histograms(source[0], ref)
    # Same mapping up to the CDF convention (mid-point vs right-continuous) and 1025 levels.
    assert np.abs(ours - theirs).mean() < 2e-3
    assert ours.shape == source[0].shape and ours.dtype == np.float32


def test_matched_histogram_equals_reference_and_order_is_kept(sites) -> None:
    target, source = sites
    model = HistogramMatching().fit(target)
    for img in source:
        out = model.transform(img)
        q = image_quantiles(out, model.probabilities)
        assert np.abs(q[5:-5] - model.reference[5:-5]).max() < 0.01
        order = np.argsort(img, axis=None, kind="stable")
        assert np.all(np.diff(out.ravel()[order]) >= 0)  # a monotone intensity map


def test_histogram_distance_to_target_drops(sites) -> None:
    target, source = sites
    target_hist = np.mean([intensity_histogram(t) for t in target], axis=0)
    for method in ("histogram", "nyul"):
        model = create_harmonizer(method).fit(target)
        before = np.mean([wasserstein_1d(intensity_histogram(s), target_hist) for s in source])
        after = np.mean(
            [wasserstein_1d(intensity_histogram(model.transform(s)), target_hist) for s in source]
        )
        assert after < 0.3 * before, (method, before, after)


@pytest.mark.parametrize("method", ["histogram", "nyul"])
def test_save_load_round_trip_is_exact_and_plain_json(method, sites, tmp_path) -> None:
    target, source = sites
    model = create_harmonizer(method).fit(target)
    model.save(str(tmp_path / "m"), card={"note": "test"})
    doc = json.loads((tmp_path / "m" / "harmonizer.json").read_text())
    assert doc["method"] == method and doc["card"] == {"note": "test"}
    loaded = load_model(str(tmp_path / "m"), expected_method=method)
    np.testing.assert_array_equal(
        loaded.harmonizer.transform(source[1]), model.transform(source[1])
    )
    assert len(loaded.model_hash) == 16
    with pytest.raises(ModelError, match="holds a"):
        load_model(
            str(tmp_path / "m"), expected_method="nyul" if method == "histogram" else "histogram"
        )


def test_bad_inputs_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(ModelError, match="not fitted"):
        HistogramMatching().transform(np.zeros((4, 4)))
    with pytest.raises(ModelError, match="at least one"):
        HistogramMatching().fit([])
    with pytest.raises(ModelError, match="2-D"):
        HistogramMatching().fit([np.zeros((2, 3, 3))])
    with pytest.raises(ConfigError, match="levels"):
        create_harmonizer("histogram", {"levels": 1})
    with pytest.raises(ConfigError, match=r"unknown histogram settings \['bins'\]"):
        create_harmonizer("histogram", {"bins": 3})
    with pytest.raises(ModelError, match="cannot save an unfitted histogram matching model"):
        HistogramMatching().save(str(tmp_path / "unfitted"))
    with pytest.raises(ModelError, match="holds 3 fitted values, its config asks for 1025"):
        HistogramMatching.from_state({"config": {"levels": 1025}, "reference": [0, 0.5, 1]})
