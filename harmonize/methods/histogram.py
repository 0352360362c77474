"""Histogram matching to a target-site reference built from many images (the classical baseline).

``fit`` summarises every target image by its quantile function at ``levels`` evenly spaced
probabilities and averages them: the mean of 1-D quantile functions is the Wasserstein barycenter
of the target histograms, so the reference is a typical target image's histogram rather than a
pooled one dominated by large images. ``transform`` maps each source pixel through its own image's
CDF and then through the reference quantile function (exact matching up to 16-bit resolution),
at full resolution, through one lookup table.

Example::

    hm = HistogramMatching().fit(target_images)
    harmonized = hm.transform(source_image)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harmonize.methods.base import ClassicalHarmonizer, check_display_image
from harmonize.validate import check_int

# Display images are quantised to this many grey levels to build exact CDFs with one bincount;
# DICOM stores at most 16 bits, so nothing is lost.
GREY_LEVELS = 65536


def quantize(image: np.ndarray) -> np.ndarray:
    """Display values in [0, 1] as integer grey levels 0..GREY_LEVELS-1 (clipped)."""
    scaled = np.clip(image, 0.0, 1.0) * (GREY_LEVELS - 1) + 0.5
    return scaled.astype(np.int32)


def grey_level_cdf(levels: np.ndarray) -> np.ndarray:
    """Mid-point CDF per grey level: P(X < v) + P(X = v)/2, in (0, 1) for every occupied level."""
    counts = np.bincount(levels.ravel(), minlength=GREY_LEVELS).astype(np.float64)
    cum = np.cumsum(counts)
    return (cum - counts / 2.0) / cum[-1]


def image_quantiles(image: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The image's intensity quantiles at ``probabilities`` (inverse of its empirical CDF)."""
    levels = quantize(check_display_image(image))
    counts = np.bincount(levels.ravel(), minlength=GREY_LEVELS)
    cum = np.cumsum(counts) / levels.size
    idx = np.searchsorted(cum, np.clip(probabilities, 0.0, 1.0), side="left")
    return np.minimum(idx, GREY_LEVELS - 1) / (GREY_LEVELS - 1)


@dataclass(frozen=True)
class HistogramConfig:
    """levels: number of evenly spaced probabilities describing each histogram (>= 3)."""

    levels: int = 1025

    def __post_init__(self) -> None:
        check_int("histogram", "levels", self.levels, low=3, high=GREY_LEVELS)


class HistogramMatching(ClassicalHarmonizer):
    method: ClassVar[str] = "histogram"
    config_class: ClassVar[type] = HistogramConfig
    title: ClassVar[str] = "histogram matching"
    fitted_name: ClassVar[str] = "reference"
    config: HistogramConfig

    def __init__(self, config: HistogramConfig | None = None) -> None:
        super().__init__(config)
        self.probabilities = np.linspace(0.0, 1.0, self.config.levels)

    @property
    def reference(self) -> np.ndarray | None:
        """The fitted reference quantile function (None until fitted)."""
        return self.fitted

    def n_values(self) -> int:
        return self.config.levels

    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """One image's quantile function at the config's probabilities."""
        return image_quantiles(image, self.probabilities)

    def reduce(self, landmarks: np.ndarray) -> np.ndarray:
        """The mean of the per-image quantile functions (kept non-decreasing)."""
        return np.maximum.accumulate(landmarks.mean(axis=0))

    def transform(self, image: np.ndarray) -> np.ndarray:
        return match_to_reference(image, self.probabilities, self.fitted_values())


def match_to_reference(
    image: np.ndarray, probabilities: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """``image`` mapped through its own CDF and then the ``reference`` quantile function (given
    at ``probabilities``), by one lookup table over its grey levels."""
    levels = quantize(check_display_image(image))
    lut = np.interp(grey_level_cdf(levels), probabilities, reference).astype(np.float32)
    return lut[levels]
