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

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from harmonize.errors import ConfigError, ModelError
from harmonize.methods.base import Harmonizer, check_display_image

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
        if not 3 <= self.levels <= GREY_LEVELS:
            raise ConfigError(f"histogram levels must be in 3..{GREY_LEVELS}, got {self.levels}")


class HistogramMatching(Harmonizer):
    method: ClassVar[str] = "histogram"
    config_class: ClassVar[type | None] = HistogramConfig

    def __init__(self, config: HistogramConfig | None = None) -> None:
        self.config = config or HistogramConfig()
        self.probabilities = np.linspace(0.0, 1.0, self.config.levels)
        self.reference: np.ndarray | None = None
        self.n_fitted = 0

    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """One image's summary used by ``fit``: its quantile function (map step of a fit)."""
        return image_quantiles(image, self.probabilities)

    def fit_landmarks(self, landmarks: Iterable[np.ndarray]) -> HistogramMatching:
        """Reduce step of a fit: average per-image quantile functions."""
        rows = list(landmarks)
        if not rows:
            raise ModelError("histogram matching needs at least one target image to fit")
        stacked = np.stack(rows)
        self.reference = np.maximum.accumulate(stacked.mean(axis=0))
        self.n_fitted = int(stacked.shape[0])
        return self

    def fit(self, target_images: Iterable[np.ndarray]) -> HistogramMatching:
        return self.fit_landmarks(self.landmarks(img) for img in target_images)

    def transform(self, image: np.ndarray) -> np.ndarray:
        if self.reference is None:
            raise ModelError("histogram matching is not fitted; call fit() or load a model")
        levels = quantize(check_display_image(image))
        cdf = grey_level_cdf(levels)
        lut = np.interp(cdf, self.probabilities, self.reference).astype(np.float32)
        return lut[levels]

    def state(self) -> dict[str, Any]:
        if self.reference is None:
            raise ModelError("cannot save an unfitted histogram matching model; fit it first")
        return {
            "config": asdict(self.config),
            "reference": [float(v) for v in self.reference],
            "n_fitted": self.n_fitted,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], read_file: Callable[[str], bytes] | None = None
    ) -> HistogramMatching:
        try:
            model = cls(HistogramConfig(**state["config"]))
            reference = np.asarray(state["reference"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"histogram model state is malformed: {err}") from err
        if reference.shape != model.probabilities.shape:
            raise ModelError(
                f"histogram reference has {reference.shape[0]} values, config says "
                f"{model.config.levels} levels"
            )
        model.reference = reference
        model.n_fitted = int(state.get("n_fitted", 0))
        return model
