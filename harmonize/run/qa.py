"""Per-image QA flags of a harmonization run: short stable codes a person can act on.

Each flag needs only one row (its original and harmonized pixels, SSIM, classifier scores and
histograms) and, for ``hist_away``, the target histogram of the model's card, so it is computed
in the stream, row by row (``run/stages.py``'s metrics stage writes the manifest's
``qa_flags``: an empty list when clean). The run-wide flag ``ssim_outlier`` (SSIM far below the
run's own distribution) needs every row: the report computes it (``report/qa.py``).

Codes and what they mean (``REASONS``; thresholds in ``QaThresholds``):

- ``inverted``: the harmonized image is anti-correlated with the original (Pearson correlation
  of the pixels below -0.5, or SSIM below 0): the harmonizer turned dark into bright.
- ``flat``: the output's dynamic range (1st to 99th percentile) collapsed to less than a
  quarter of the input's: a curve that is nearly flat, or a truncated range.
- ``clipped``: over 20 % more of the output's pixels sit at 0 or 1 than of the input's.
- ``score_flip``: the classifier's score crosses 0.5 and moves by more than 0.5.
- ``hist_away``: the histogram moved away from the target (W1 to the target histogram larger
  after than before, by more than 0.01).
- ``low_ssim``: SSIM(original, harmonized) below 0.3.

Example::

    flags = qa_flags(before, after, ssim=0.12, score_in=0.2, score_out=0.9)
    # ["low_ssim", "score_flip"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harmonize.metrics.histogram import wasserstein_1d

REASONS: dict[str, str] = {
    "inverted": "the harmonized image is anti-correlated with the original (inverted)",
    "flat": "the harmonized image's dynamic range collapsed (nearly flat or truncated)",
    "clipped": "many more harmonized pixels are clipped at black or white than in the original",
    "score_flip": "the classifier's score crossed 0.5 and moved by more than the threshold",
    "hist_away": "the histogram moved away from the target site's (W1 larger after than before)",
    "low_ssim": "SSIM(original, harmonized) is below the absolute floor",
    "ssim_outlier": "SSIM is far below the run's own distribution (robust z-score below -4)",
}
"""Every QA code and its reason, in words for the report (``ssim_outlier``: the report's)."""

Histogram = Sequence[float] | np.ndarray  # HIST_BINS weights (a manifest list or an array)
MAX_PIXELS = 512 * 512  # the pixel statistics look at a strided view of at most about this many


@dataclass(frozen=True)
class QaThresholds:
    """Where each flag starts (see the module's docstring)."""

    inverted_correlation: float = -0.5
    flat_fraction: float = 0.25  # output's p1..p99 range below this fraction of the input's
    clipped_excess: float = 0.2  # fraction of pixels at 0 or 1, output minus input
    score_move: float = 0.5
    hist_margin: float = 0.01  # W1 after minus before, in display intensity
    ssim_floor: float = 0.3


DEFAULT_THRESHOLDS = QaThresholds()
CLIP_TOLERANCE = 1.0 / 1024  # a pixel this close to 0 or 1 counts as clipped


def _strided(image: np.ndarray) -> np.ndarray:
    """A regular subsample of at most about MAX_PIXELS pixels, as float64 (statistics only)."""
    step = max(1, math.ceil(math.sqrt(image.size / MAX_PIXELS)))
    return np.asarray(image[::step, ::step], dtype=np.float64).ravel()


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation, or None when either image is constant."""
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / norm if norm > 1e-12 else None


def _clipped_fraction(values: np.ndarray) -> float:
    return float(np.mean((values <= CLIP_TOLERANCE) | (values >= 1.0 - CLIP_TOLERANCE)))


def pixel_flags(
    before: np.ndarray, after: np.ndarray, limits: QaThresholds = DEFAULT_THRESHOLDS
) -> list[str]:
    """``inverted``, ``flat`` and ``clipped``, from the original and harmonized display pixels."""
    a, b = _strided(before), _strided(after)
    flags = []
    corr = _correlation(a, b)
    if corr is not None and corr < limits.inverted_correlation:
        flags.append("inverted")
    low_in, high_in = np.percentile(a, [1, 99])
    low_out, high_out = np.percentile(b, [1, 99])
    if high_in - low_in > 0 and high_out - low_out < limits.flat_fraction * (high_in - low_in):
        flags.append("flat")
    if _clipped_fraction(b) - _clipped_fraction(a) > limits.clipped_excess:
        flags.append("clipped")
    return flags


def qa_flags(
    before: np.ndarray,
    after: np.ndarray,
    *,
    ssim: float | None = None,
    score_in: float | None = None,
    score_out: float | None = None,
    hist_in: Histogram | None = None,
    hist_out: Histogram | None = None,
    target_histogram: Histogram | None = None,
    limits: QaThresholds = DEFAULT_THRESHOLDS,
) -> list[str]:
    """The QA codes of one harmonized image, in ``REASONS`` order; empty when clean. A measure
    that is missing (no SSIM for a tiny image, no classifier, no target histogram) raises no
    flag."""
    flags = set(pixel_flags(before, after, limits))
    if ssim is not None and math.isfinite(ssim):
        if ssim < 0:
            flags.add("inverted")
        if ssim < limits.ssim_floor:
            flags.add("low_ssim")
    if score_in is not None and score_out is not None and math.isfinite(score_in - score_out):
        crossed = (score_in - 0.5) * (score_out - 0.5) < 0
        if crossed and abs(score_out - score_in) > limits.score_move:
            flags.add("score_flip")
    if hist_in is not None and hist_out is not None and target_histogram is not None:
        gap_in = wasserstein_1d(np.asarray(hist_in), np.asarray(target_histogram))
        gap_out = wasserstein_1d(np.asarray(hist_out), np.asarray(target_histogram))
        if gap_out > gap_in + limits.hist_margin:
            flags.add("hist_away")
    return [code for code in REASONS if code in flags]


def robust_z(values: np.ndarray) -> np.ndarray:
    """(value - median) / (1.4826 * MAD) of each value (the MAD scaled to a normal's standard
    deviation); NaN everywhere when the MAD is 0 (no spread to measure against)."""
    values = np.asarray(values, dtype=np.float64)
    median = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - median))
    if not mad > 0:
        return np.full(values.shape, np.nan)
    return (values - median) / mad


OUTLIER_Z = -4.0
MIN_DISTRIBUTION = 5  # a run's SSIM distribution needs at least this many images


def ssim_outliers(values: np.ndarray, z: float = OUTLIER_Z) -> np.ndarray:
    """Which SSIMs are far below their run's distribution (robust z-score below ``z``); none
    when fewer than MIN_DISTRIBUTION values are finite."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape, dtype=bool)
    finite = np.isfinite(values)
    if finite.sum() < MIN_DISTRIBUTION:
        return out
    scores = robust_z(values[finite])
    out[finite] = np.nan_to_num(scores, nan=0.0) < z
    return out
