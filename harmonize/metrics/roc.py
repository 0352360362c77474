"""Classifier metrics: ROC curve and AUC equal to scikit-learn's, DeLong confidence intervals and
DeLong's test of the difference of two correlated AUCs.

Example::

    auc, low, high = auc_ci_delong(labels, scores)               # AUC with its 95% CI
    diff, low, high, p = auc_difference_delong(labels, harmonized_scores, original_scores)
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
import torch

from harmonize.errors import HarmonizeError


class MetricInputError(HarmonizeError, ValueError):
    """Labels or scores a ROC metric cannot use (a ValueError, and a HarmonizeError for the CLI)."""


class AucInterval(NamedTuple):
    """An AUC and the bounds of its confidence interval (clipped to [0, 1])."""

    auc: float
    low: float
    high: float


class AucDifference(NamedTuple):
    """AUC(a) - AUC(b) on the same samples, its confidence interval (clipped to [-1, 1]) and the
    two-sided p-value of "no difference"."""

    diff: float
    low: float
    high: float
    p_value: float


def _as_float_vector(values: Any, what: str) -> np.ndarray:
    """A 1-D float64 array; missing values (None, pd.NA) become NaN."""
    to_numpy = getattr(values, "to_numpy", None)  # pandas Series / nullable arrays: NA -> NaN
    if callable(to_numpy):
        try:
            values = to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            values = to_numpy()
    try:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        array = np.asarray(values).astype(np.float64)
    except (TypeError, ValueError) as err:
        raise MetricInputError(f"{what} must be numbers, got {err}") from err
    if array.ndim != 1:
        raise MetricInputError(f"{what} must be one-dimensional, got shape {array.shape}")
    return array


def _binary_inputs(labels: Any, *scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated labels (int8 0/1, both classes present) and a (k, n) float64 array of scores."""
    y = _as_float_vector(labels, "labels")
    if y.size == 0:
        raise MetricInputError("ROC metrics need at least one sample, got none")
    if np.isnan(y).any():
        raise MetricInputError(
            f"labels contain {int(np.isnan(y).sum())} missing value(s); drop those samples first"
        )
    if not np.isin(y, (0.0, 1.0)).all():
        odd = np.unique(y[~np.isin(y, (0.0, 1.0))])[:5]
        raise MetricInputError(f"labels must be 0/1 (or bool), got {odd.tolist()}")
    rows = []
    for i, values in enumerate(scores):
        name = "scores" if len(scores) == 1 else f"scores #{i + 1}"
        s = _as_float_vector(values, name)
        if s.size != y.size:
            raise MetricInputError(
                f"labels and {name} differ in length: {y.size} labels, {s.size} scores"
            )
        if not np.isfinite(s).all():
            raise MetricInputError(
                f"{name} contain {int((~np.isfinite(s)).sum())} NaN or infinite value(s); "
                "drop those samples first"
            )
        rows.append(s)
    n_pos = int(y.sum())
    if n_pos in (0, y.size):
        raise MetricInputError(
            f"ROC AUC needs both classes, but all {y.size} labels are {int(y[0])}"
        )
    return y.astype(np.int8), np.stack(rows)


def roc_curve(
    labels: Any, scores: Any, *, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sklearn.metrics.roc_curve`` for binary labels (1 = positive): (fpr, tpr, thresholds).

    Raises:
        MetricInputError (a ValueError): labels not 0/1, one class only, NaN labels or scores,
            lengths that differ.
    """
    from sklearn.metrics import roc_curve as sk_roc_curve

    y, s = _binary_inputs(labels, scores)
    fpr, tpr, thresholds = sk_roc_curve(y, s[0], drop_intermediate=drop_intermediate)
    return fpr, tpr, thresholds


def roc_auc(labels: Any, scores: Any) -> float:
    """``sklearn.metrics.roc_auc_score`` for binary labels (1 = positive); ties count one half.

    Raises:
        MetricInputError (a ValueError): as `roc_curve`.
    """
    from sklearn.metrics import roc_auc_score

    y, s = _binary_inputs(labels, scores)
    return float(roc_auc_score(y, s[0]))


def _delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance (k, k) for a (k, n) score array, by the midrank
    algorithm of Sun & Xu (IEEE Signal Process. Lett. 21(11), 2014): O(k n log n)."""
    from scipy.stats import rankdata

    positive = y == 1
    pos, neg = scores[:, positive], scores[:, ~positive]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise MetricInputError(
            f"a DeLong confidence interval needs at least 2 positives and 2 negatives, got "
            f"{m} and {n}"
        )
    tx = rankdata(pos, axis=1)  # midranks within the positives
    ty = rankdata(neg, axis=1)  # within the negatives
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # within all samples
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: share of negatives scored below it (ties 1/2)
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: share of positives scored above it
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def _z_for(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise MetricInputError(f"confidence level must be between 0 and 1, got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def auc_ci_delong(labels: Any, scores: Any, level: float = 0.95) -> AucInterval:
    """ROC AUC with DeLong's confidence interval (DeLong, DeLong & Clarke-Pearson, Biometrics
    1988): AUC ± z * sqrt(Var), the variance from the midrank placement values, clipped to [0, 1].

    The AUC equals `roc_auc` (and scikit-learn's). Perfectly separated classes have variance 0:
    the interval is then the point.

    Raises:
        MetricInputError (a ValueError): as `roc_curve`; fewer than 2 positives or negatives; a
            level outside (0, 1).
    """
    z = _z_for(level)
    y, s = _binary_inputs(labels, scores)
    aucs, cov = _delong(y, s)
    auc, half = float(aucs[0]), z * math.sqrt(max(float(cov[0, 0]), 0.0))
    return AucInterval(auc, max(0.0, auc - half), min(1.0, auc + half))


def auc_difference_delong(
    labels: Any, scores_a: Any, scores_b: Any, level: float = 0.95
) -> AucDifference:
    """DeLong's test for two correlated AUCs: two score vectors for the same samples (element i
    of each belongs to sample i; align them by sample id before calling).

    Returns AUC(a) - AUC(b), its confidence interval (clipped to [-1, 1]) and the two-sided
    p-value of z = diff / SE. Vectors that rank the samples identically give (0, 0, 0, 1).

    Raises:
        MetricInputError (a ValueError): as `auc_ci_delong`, for either score vector.
    """
    z = _z_for(level)
    y, s = _binary_inputs(labels, scores_a, scores_b)
    aucs, cov = _delong(y, s)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(var) if var > 0.0 else 0.0
    if se == 0.0:
        p_value = 1.0 if diff == 0.0 else 0.0
    else:
        p_value = math.erfc(abs(diff) / se / math.sqrt(2.0))
    half = z * se
    return AucDifference(diff, max(-1.0, diff - half), min(1.0, diff + half), p_value)
