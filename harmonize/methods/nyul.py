"""Nyúl–Udupa piecewise-linear intensity standardization (the second classical baseline).

Nyúl, Udupa & Zhang, "New variants of a method of MRI scale standardization", IEEE TMI 2000.
Each image is described by intensity landmarks at fixed percentiles (default 1, 10, 20, ..., 90,
99). ``fit`` maps every target image's landmarks linearly so its first/last landmarks land on a
standard scale [s1, s2] (here the target's mean 1st/99th percentile, so outputs stay in target
units) and averages them. ``transform`` maps an image piecewise-linearly from its own landmarks to
the standard ones, extending the end segments linearly, then clips to [0, 1]. Unlike full
histogram matching it only moves a dozen landmarks, so it keeps more of each image's own contrast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from harmonize.errors import ConfigError
from harmonize.methods.base import ClassicalHarmonizer, check_display_image
from harmonize.methods.histogram import image_quantiles

DEFAULT_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
_MIN_STEP = 1e-6  # keeps landmarks strictly increasing on flat images


@dataclass(frozen=True)
class NyulConfig:
    """percentiles: increasing landmark percentiles in (0, 100), at least 3."""

    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES

    def __post_init__(self) -> None:
        p = tuple(float(v) for v in self.percentiles)
        object.__setattr__(self, "percentiles", p)
        if len(p) < 3 or any(b <= a for a, b in zip(p, p[1:], strict=False)):
            raise ConfigError(f"Nyúl percentiles must be >= 3 increasing values, got {list(p)}")
        if p[0] <= 0.0 or p[-1] >= 100.0:
            raise ConfigError(f"Nyúl percentiles must lie strictly inside (0, 100), got {list(p)}")


def _strictly_increasing(values: np.ndarray) -> np.ndarray:
    steps = np.arange(values.size) * _MIN_STEP
    return np.maximum.accumulate(values - steps) + steps


class NyulStandardization(ClassicalHarmonizer):
    method: ClassVar[str] = "nyul"
    config_class: ClassVar[type] = NyulConfig
    title: ClassVar[str] = "Nyúl standardization"
    fitted_name: ClassVar[str] = "standard"
    config: NyulConfig

    @property
    def standard(self) -> np.ndarray | None:
        """The fitted standard landmarks (None until fitted)."""
        return self.fitted

    def n_values(self) -> int:
        return len(self.config.percentiles)

    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """One image's landmark intensities at the configured percentiles."""
        probabilities = np.asarray(self.config.percentiles) / 100.0
        return _strictly_increasing(image_quantiles(image, probabilities))

    def reduce(self, landmarks: np.ndarray) -> np.ndarray:
        """Every image's landmarks mapped linearly onto [s1, s2] (the mean first and last
        landmark), then averaged."""
        s1, s2 = float(landmarks[:, 0].mean()), float(landmarks[:, -1].mean())
        low, high = landmarks[:, :1], landmarks[:, -1:]
        mapped = s1 + (landmarks - low) / np.maximum(high - low, _MIN_STEP) * (s2 - s1)
        return _strictly_increasing(mapped.mean(axis=0))

    def transform(self, image: np.ndarray) -> np.ndarray:
        standard = self.fitted_values()
        img = check_display_image(image)
        own = self.landmarks(img)
        out = np.interp(img, own, standard)
        # np.interp clamps outside the end landmarks; extend the end segments linearly instead.
        lo_slope = (standard[1] - standard[0]) / (own[1] - own[0])
        hi_slope = (standard[-1] - standard[-2]) / (own[-1] - own[-2])
        below, above = img < own[0], img > own[-1]
        out[below] = standard[0] + (img[below] - own[0]) * lo_slope
        out[above] = standard[-1] + (img[above] - own[-1]) * hi_slope
        return np.clip(out, 0.0, 1.0).astype(np.float32)
