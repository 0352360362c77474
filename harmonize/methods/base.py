"""The harmonizer interface every method implements, and how fitted models are saved and loaded.

A harmonizer maps one *display* image (float32 in [0, 1], 1 = bright, any size) of a source site
to how that image would look at the target site, keeping its shape. A fitted model lives under a
model URI (a folder or an s3:// prefix) as ``harmonizer.json``: the method name, the config that
made it and its fitted state. Loading never unpickles code: the state is JSON (classical methods) or
safetensors weights (neural methods) next to it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np

from harmonize import __version__
from harmonize.errors import ConfigError, ModelError
from harmonize.io.storage import Storage, join

MODEL_FILE = "harmonizer.json"
FORMAT_VERSION = 1


class Harmonizer(ABC):
    """A method that learns from target-site images and maps source images to the target look.

    Subclasses set ``method`` (the registry key), implement ``fit``, ``transform`` and the JSON
    state round trip (``state`` / ``from_state``).
    """

    method: ClassVar[str]
    # Classical methods are built from a config dataclass and fitted; neural ones are trained.
    config_class: ClassVar[type | None] = None
    # How the model may be applied to a full-resolution image (see harmonize run --mode).
    modes: ClassVar[tuple[str, ...]] = ("direct",)
    mode: str = "direct"

    def set_mode(self, mode: str) -> Harmonizer:
        """Choose how ``transform`` applies the model; ConfigError for a mode it does not have."""
        if mode not in self.modes:
            raise ConfigError(
                f'{self.method} has no mode "{mode}"; it supports {", ".join(self.modes)}'
            )
        self.mode = mode
        return self

    @abstractmethod
    def fit(self, target_images: Iterable[np.ndarray]) -> Harmonizer:
        """Learn the target site's intensity distribution from many display images."""

    @abstractmethod
    def transform(self, image: np.ndarray) -> np.ndarray:
        """Harmonize one display image (float in [0, 1], shape (H, W)); same shape, float32."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The config and fitted state as JSON-serialisable values."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any], read_file: Callable[[str], bytes]) -> Harmonizer:
        """Rebuild a fitted harmonizer from ``state()``'s output; ``read_file(name)`` reads a
        file saved next to the model file (e.g. network weights)."""

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self, card: dict[str, Any] | None = None) -> str:
        doc = {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "code_version": __version__,
            "state": self.state(),
            "card": card or {},
        }
        return json.dumps(doc, indent=1, sort_keys=True)

    def save(
        self, uri: str, storage: Storage | None = None, card: dict[str, Any] | None = None
    ) -> str:
        """Write the model under ``uri``; returns the URI of the model file."""
        target = join(uri, MODEL_FILE)
        (storage or Storage()).write_text(target, self.to_json(card))
        return target


def check_display_image(image: np.ndarray) -> np.ndarray:
    """The image as a 2-D float32 array, or a ModelError that says what shape was given."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise ModelError(f"expected one 2-D grayscale image, got an array of shape {arr.shape}")
    return arr


def fingerprint(text: str) -> str:
    """A short, stable content hash (used to tell models and configs apart in the manifest)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
