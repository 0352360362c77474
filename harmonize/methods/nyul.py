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

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from harmonize.errors import ConfigError, ModelError
from harmonize.methods.base import Harmonizer, check_display_image
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


class NyulStandardization(Harmonizer):
    method: ClassVar[str] = "nyul"
    config_class: ClassVar[type | None] = NyulConfig

    def __init__(self, config: NyulConfig | None = None) -> None:
        self.config = config or NyulConfig()
        self.standard: np.ndarray | None = None
        self.n_fitted = 0

    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """One image's landmark intensities at the configured percentiles."""
        probabilities = np.asarray(self.config.percentiles) / 100.0
        return _strictly_increasing(image_quantiles(image, probabilities))

    def fit_landmarks(self, landmarks: Iterable[np.ndarray]) -> NyulStandardization:
        rows = [np.asarray(r, dtype=np.float64) for r in landmarks]
        if not rows:
            raise ModelError("Nyúl standardization needs at least one target image to fit")
        stacked = np.stack(rows)
        s1, s2 = float(stacked[:, 0].mean()), float(stacked[:, -1].mean())
        low, high = stacked[:, :1], stacked[:, -1:]
        mapped = s1 + (stacked - low) / np.maximum(high - low, _MIN_STEP) * (s2 - s1)
        self.standard = _strictly_increasing(mapped.mean(axis=0))
        self.n_fitted = len(rows)
        return self

    def fit(self, target_images: Iterable[np.ndarray]) -> NyulStandardization:
        return self.fit_landmarks(self.landmarks(img) for img in target_images)

    def transform(self, image: np.ndarray) -> np.ndarray:
        if self.standard is None:
            raise ModelError("Nyúl standardization is not fitted; call fit() or load a model")
        img = check_display_image(image)
        own = self.landmarks(img)
        out = np.interp(img, own, self.standard)
        # np.interp clamps outside the end landmarks; extend the end segments linearly instead.
        lo_slope = (self.standard[1] - self.standard[0]) / (own[1] - own[0])
        hi_slope = (self.standard[-1] - self.standard[-2]) / (own[-1] - own[-2])
        below, above = img < own[0], img > own[-1]
        out[below] = self.standard[0] + (img[below] - own[0]) * lo_slope
        out[above] = self.standard[-1] + (img[above] - own[-1]) * hi_slope
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def state(self) -> dict[str, Any]:
        if self.standard is None:
            raise ModelError("cannot save an unfitted Nyúl model; fit it first")
        return {
            "config": asdict(self.config),
            "standard": [float(v) for v in self.standard],
            "n_fitted": self.n_fitted,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], read_file: Callable[[str], bytes] | None = None
    ) -> NyulStandardization:
        try:
            model = cls(NyulConfig(percentiles=tuple(state["config"]["percentiles"])))
            standard = np.asarray(state["standard"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"Nyúl model state is malformed: {err}") from err
        if standard.shape != (len(model.config.percentiles),):
            raise ModelError("Nyúl standard landmarks do not match the configured percentiles")
        model.standard = standard
        model.n_fitted = int(state.get("n_fitted", 0))
        return model
