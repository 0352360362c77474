"""The harmonizer interface every method implements, and the base of the classical (fitted) ones.

A harmonizer maps one *display* image (float32 in [0, 1], 1 = bright, any size) of a source site
to how that image would look at the target site, keeping its shape. Classical methods are fitted
as map/reduce over target images (``landmarks`` of each image, then ``reduce``) and saved as
plain JSON through ``harmonize.models.files``; neural ones (``methods/neural.py``) are trained.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np

from harmonize.errors import ConfigError, ModelError
from harmonize.io.storage import Storage
from harmonize.models.files import write_model


class Harmonizer(ABC):
    """A mapping from the source site's look to the target site's, applied image by image.

    Subclasses set ``method`` (the registry key) and implement ``transform``.
    """

    method: ClassVar[str]
    # How the model may be applied to a full-resolution image (see harmonize run --mode).
    modes: ClassVar[tuple[str, ...]] = ("direct",)
    mode: str = "direct"
    # The target site's mean HIST_BINS histogram, from the model card when loaded (run QA's
    # ``hist_away`` flag); None when the card has none.
    target_histogram: np.ndarray | None = None

    def set_mode(self, mode: str) -> Harmonizer:
        """Choose how ``transform`` applies the model; ConfigError for a mode it does not have."""
        if mode not in self.modes:
            raise ConfigError(
                f'{self.method} has no mode "{mode}"; it supports {", ".join(self.modes)}'
            )
        self.mode = mode
        return self

    @abstractmethod
    def transform(self, image: np.ndarray) -> np.ndarray:
        """Harmonize one display image (float in [0, 1], shape (H, W)); same shape, float32."""


class ClassicalHarmonizer(Harmonizer):
    """A method fitted from target-site images alone, as map/reduce: ``landmarks`` summarises
    one image (a few KB), ``reduce`` turns every image's landmarks into the fitted values.

    Subclasses set ``config_class`` (a frozen dataclass), ``title`` (for messages) and
    ``fitted_name`` (the fitted values' key in the saved state), and implement ``landmarks``,
    ``reduce``, ``n_values`` and ``transform``.
    """

    config_class: ClassVar[type]
    title: ClassVar[str]
    fitted_name: ClassVar[str]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.fitted: np.ndarray | None = None
        self.n_fitted = 0

    @abstractmethod
    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """One image's summary (the map step of a fit)."""

    @abstractmethod
    def reduce(self, landmarks: np.ndarray) -> np.ndarray:
        """The fitted values from every image's landmarks, stacked (n_images, n_landmarks)."""

    @abstractmethod
    def n_values(self) -> int:
        """How many fitted values the config asks for."""

    def fit_landmarks(self, landmarks: Iterable[np.ndarray]) -> ClassicalHarmonizer:
        """The reduce step of a fit."""
        rows = [np.asarray(row, dtype=np.float64) for row in landmarks]
        if not rows:
            raise ModelError(f"{self.title} needs at least one target image to fit")
        self.fitted = self.reduce(np.stack(rows))
        self.n_fitted = len(rows)
        return self

    def fit(self, target_images: Iterable[np.ndarray]) -> ClassicalHarmonizer:
        """Learn the target site's intensity distribution from many display images."""
        return self.fit_landmarks(self.landmarks(image) for image in target_images)

    def fitted_values(self) -> np.ndarray:
        """The fitted values; ModelError when the model is not fitted yet."""
        if self.fitted is None:
            raise ModelError(f"{self.title} is not fitted; call fit() or load a model")
        return self.fitted

    def state(self) -> dict[str, Any]:
        """The config and fitted values as JSON values (what decides the model's output)."""
        if self.fitted is None:
            raise ModelError(f"cannot save an unfitted {self.title} model; fit it first")
        return {
            "config": asdict(self.config),
            self.fitted_name: [float(v) for v in self.fitted],
            "n_fitted": self.n_fitted,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ClassicalHarmonizer:
        """Rebuild a fitted model from ``state()``'s output."""
        try:
            model = cls(cls.config_class(**state["config"]))
            fitted = np.asarray(state[cls.fitted_name], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{cls.title} model state is malformed: {err}") from err
        if fitted.shape != (model.n_values(),):
            raise ModelError(
                f"the {cls.title} model holds {fitted.size} fitted values, its config asks for "
                f"{model.n_values()}"
            )
        model.fitted = fitted
        model.n_fitted = int(state.get("n_fitted", 0))
        return model

    def save(
        self, uri: str, storage: Storage | None = None, card: dict[str, Any] | None = None
    ) -> str:
        """Write the model under ``uri``; returns the URI of the model file."""
        return write_model(uri, method=self.method, state=self.state(), card=card, storage=storage)


def check_display_image(image: np.ndarray) -> np.ndarray:
    """The image as a 2-D float32 array, or a ModelError that says what shape was given."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise ModelError(f"expected one 2-D grayscale image, got an array of shape {arr.shape}")
    return arr
