"""Tests for harmonize.metrics.roc against scikit-learn, the DeLong definition and a bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from harmonize.errors import HarmonizeError
from harmonize.metrics.roc import (
    MetricInputError,
    auc_ci_delong,
    auc_difference_delong,
    roc_auc,
    roc_curve,
)


def scored_sample(
    rng: np.random.Generator, n: int, shift: float = 1.0, decimals: int | None = 1
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels (about 40% positive) and normal scores shifted up by ``shift`` for positives;
    rounded to ``decimals`` so that many scores tie."""
    labels = (rng.random(n) < 0.4).astype(np.int64)
    labels[:2], labels[2:4] = 1, 0  # both classes, at least two of each
    scores = rng.normal(shift * labels, 1.0)
    return labels, scores if decimals is None else np.round(scores, decimals)


def brute_force_delong(labels: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and DeLong covariance from the definition: the O(m n) kernel psi(x, y) = 1 if x > y,
    1/2 if equal, and placement values averaged over the other class (DeLong et al. 1988)."""
    pos, neg = labels == 1, labels == 0
    v10, v01 = [], []
    for s in scores:
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    aucs = np.array([v.mean() for v in v10])
    cov = np.cov(np.array(v10)) / pos.sum() + np.cov(np.array(v01)) / neg.sum()
    return aucs, np.atleast_2d(cov)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_and_curve_equal_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, scores = scored_sample(rng, 300, shift=0.7, decimals=1)
    assert len(np.unique(scores)) < 100  # many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-15)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    ref = sk_roc_curve(labels, scores)
    for ours, theirs in zip((fpr, tpr, thresholds), ref, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    full = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(full[1], sk_roc_curve(labels, scores, drop_intermediate=False)[1])
    # bool and pandas nullable labels mean the same
    assert roc_auc(labels.astype(bool), scores) == roc_auc(pd.array(labels, dtype="Int64"), scores)


def test_delong_equals_the_brute_force_definition() -> None:
    rng = np.random.default_rng(5)
    labels, a = scored_sample(rng, 250, shift=0.8, decimals=1)
    b = np.round(a + rng.normal(0.0, 0.8, a.size), 1)  # correlated with a, with ties
    aucs, cov = brute_force_delong(labels, a, b)
    auc, low, high = auc_ci_delong(labels, a)
    z = stats.norm.ppf(0.975)
    assert auc == pytest.approx(roc_auc_score(labels, a), abs=1e-12)
    assert auc == pytest.approx(aucs[0], abs=1e-12)
    assert (high - low) / 2 == pytest.approx(z * np.sqrt(cov[0, 0]), rel=1e-9)
    diff, d_low, d_high, p = auc_difference_delong(labels, a, b)
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert diff == pytest.approx(aucs[0] - aucs[1], abs=1e-12)
    assert (d_high - d_low) / 2 == pytest.approx(z * se, rel=1e-9)
    assert p == pytest.approx(2 * stats.norm.sf(abs(diff) / se), rel=1e-9)


def test_delong_variance_agrees_with_a_stratified_bootstrap() -> None:
    rng = np.random.default_rng(6)
    labels, scores = scored_sample(rng, 300, shift=1.0, decimals=2)
    auc, low, high = auc_ci_delong(labels, scores)
    se_delong = (high - low) / (2 * stats.norm.ppf(0.975))
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    boot = []
    for _ in range(600):  # stratified: resample positives and negatives separately
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        boot.append(roc_auc_score(labels[idx], scores[idx]))
    assert se_delong == pytest.approx(np.std(boot), rel=0.15)
    assert low < auc < high


def test_delong_interval_covers_and_narrows_with_n() -> None:
    rng = np.random.default_rng(7)
    widths = {}
    for n in (50, 2000):
        labels, scores = scored_sample(rng, n, shift=1.0, decimals=None)
        auc, low, high = auc_ci_delong(labels, scores)
        assert 0.0 <= low <= auc <= high <= 1.0
        assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        widths[n] = high - low
    assert widths[2000] < widths[50] / 3  # ~ 1/sqrt(n): about 6x narrower
    # Coverage: the true AUC of N(1, 1) vs N(0, 1) is Phi(1 / sqrt 2); 95% intervals of 300
    # samples of 120 must cover it about 95% of the time.
    true_auc = stats.norm.cdf(1 / np.sqrt(2))
    covered = []
    for _ in range(300):
        labels, scores = scored_sample(rng, 120, shift=1.0, decimals=None)
        _, low, high = auc_ci_delong(labels, scores)
        covered.append(low <= true_auc <= high)
    assert 0.90 <= np.mean(covered) <= 0.99


def test_delong_interval_is_clipped_and_level_widens_it() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert auc_ci_delong(labels, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(8)
    labels, scores = scored_sample(rng, 40, shift=3.0, decimals=None)
    auc, low, high = auc_ci_delong(labels, scores)
    assert high <= 1.0 and low < auc
    _, low99, high99 = auc_ci_delong(labels, scores, level=0.99)
    assert low99 < low and high99 >= high


def test_paired_delong_identical_and_different_scores() -> None:
    rng = np.random.default_rng(9)
    labels, scores = scored_sample(rng, 400, shift=1.0, decimals=2)
    assert auc_difference_delong(labels, scores, scores) == (0.0, 0.0, 0.0, 1.0)
    # a monotone transform ranks the images the same: no difference either
    assert auc_difference_delong(labels, np.exp(scores), scores).p_value == 1.0
    noise = rng.normal(0.0, 1.0, labels.size)
    diff, low, high, p = auc_difference_delong(labels, scores, noise)
    assert diff == pytest.approx(roc_auc_score(labels, scores) - roc_auc_score(labels, noise))
    assert diff > 0.2 and 0.0 < low < diff < high and p < 1e-6
    # swapping the arguments mirrors the result
    swapped = auc_difference_delong(labels, noise, scores)
    assert swapped.diff == pytest.approx(-diff) and swapped.p_value == pytest.approx(p)
    assert swapped.low == pytest.approx(-high) and swapped.high == pytest.approx(-low)
    # slightly different scores: a small difference, not significant
    close = scores + rng.normal(0.0, 0.05, labels.size)
    assert auc_difference_delong(labels, close, scores).p_value > 0.01


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "needs both classes, but all 3 labels are 1"),
        ([0, 0], [0.1, 0.2], "needs both classes, but all 2 labels are 0"),
        ([0, 1, 1], [0.1, 0.2], "differ in length: 3 labels, 2 scores"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN or infinite"),
        ([0, 1, 1], [0.1, np.inf, 0.3], "NaN or infinite"),
        ([0, np.nan, 1], [0.1, 0.2, 0.3], "labels contain 1 missing value"),
        ([0, 2, 1], [0.1, 0.2, 0.3], r"labels must be 0/1 \(or bool\), got \[2.0\]"),
        (["a", "b"], [0.1, 0.2], "labels must be numbers"),
        ([], [], "at least one sample"),
        ([[0, 1]], [[0.1, 0.2]], "one-dimensional"),
    ],
)
def test_roc_metrics_reject_bad_input(labels: list, scores: list, message: str) -> None:
    for call in (
        lambda: roc_auc(labels, scores),
        lambda: roc_curve(labels, scores),
        lambda: auc_ci_delong(labels, scores),
        lambda: auc_difference_delong(labels, scores, scores),
    ):
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert isinstance(info.value, MetricInputError)
        assert isinstance(info.value, HarmonizeError)  # the CLI's clean exit 2


def test_delong_needs_two_of_each_class_and_a_valid_level() -> None:
    labels, scores = [0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4]
    assert roc_auc(labels, scores) == 1.0  # the AUC itself is defined
    with pytest.raises(ValueError, match="at least 2 positives and 2 negatives, got 1 and 3"):
        auc_ci_delong(labels, scores)
    with pytest.raises(ValueError, match="at least 2 positives"):
        auc_difference_delong(labels, scores, scores)
    with pytest.raises(ValueError, match="level must be between 0 and 1, got 1.5"):
        auc_ci_delong([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], level=1.5)
    with pytest.raises(ValueError, match="scores #2 differ in length"):
        auc_difference_delong([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2])
