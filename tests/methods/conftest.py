"""Fixtures of the method tests: two synthetic "sites" of smooth radiograph-like images."""

from __future__ import annotations

import numpy as np
import pytest


def _smooth_image(
    rng: np.random.Generator, shape: tuple[int, int], a: float, b: float
) -> np.ndarray:
    """A smooth random field pushed through a beta-like curve: a radiograph-ish histogram."""
    noise = rng.random(shape)
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(noise, 6)
    field = (field - field.min()) / (field.max() - field.min())
    return (field**a * (1 - 0.5 * field) ** b).astype(np.float32) / max(
        1e-6, float((field**a * (1 - 0.5 * field) ** b).max())
    )


@pytest.fixture()
def sites() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    target = [_smooth_image(rng, (120, 100), 0.6, 1.0) for _ in range(6)]
    source = [_smooth_image(rng, (90, 130), 2.2, 0.2) for _ in range(4)]
    return target, source
