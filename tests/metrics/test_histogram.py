"""Tests for harmonize.metrics.histogram against numpy's histogram and scipy's Wasserstein."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from harmonize.errors import HarmonizeError
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram, wasserstein_1d


def test_intensity_histogram_equals_numpy_and_sums_to_one(radiographs: list[np.ndarray]) -> None:
    image = radiographs[0]
    hist = intensity_histogram(image)
    counts, _ = np.histogram(image, bins=HIST_BINS, range=(0.0, 1.0))
    assert hist.dtype == np.float64 and hist.shape == (HIST_BINS,)
    assert hist.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(hist, counts / counts.sum(), rtol=0, atol=1e-15)
    # a torch tensor gives the same
    np.testing.assert_array_equal(intensity_histogram(torch.from_numpy(image)), hist)


def test_intensity_histogram_clips_range_and_masks() -> None:
    image = np.array([[-0.5, 0.0, 0.1, 0.5], [0.99, 1.0, 2.0, 0.6]])
    hist = intensity_histogram(image, bins=4)
    np.testing.assert_array_equal(hist, np.array([3, 0, 2, 3]) / 8)  # -0.5 and 2.0 in end bins
    mask = np.array([[0, 0, 1, 1], [0, 0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(
        intensity_histogram(image, bins=4, mask=mask), [1 / 3, 0, 2 / 3, 0]
    )
    scaled = intensity_histogram(image * 1000, bins=4, value_range=(0.0, 1000.0))
    np.testing.assert_array_equal(scaled, hist)
    with_nan = np.concatenate([image, [[np.nan] * 4]])  # NaNs are not counted
    np.testing.assert_array_equal(intensity_histogram(with_nan, bins=4), hist)
    as_uint16 = intensity_histogram(np.array([0, 100, 65535], np.uint16), 2, (0.0, 65535.0))
    np.testing.assert_array_equal(as_uint16, [2 / 3, 1 / 3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bins": 0}, "bins"),
        ({"value_range": (1.0, 1.0)}, "low < high"),
        ({"mask": np.ones((3, 3), dtype=bool)}, "mask shape"),
        ({"mask": np.zeros((2, 2), dtype=bool)}, "empty"),
    ],
)
def test_intensity_histogram_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(HarmonizeError, match=message):
        intensity_histogram(np.full((2, 2), 0.5), **kwargs)


def test_wasserstein_equals_scipy_on_bin_centres() -> None:
    rng = np.random.default_rng(7)
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for _ in range(5):
        p, q = rng.random(HIST_BINS) ** 3, rng.random(HIST_BINS)
        expected = stats.wasserstein_distance(centres, centres, p, q)
        assert wasserstein_1d(p, q) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # a unit mass moved by one bin costs one bin width, in the value range's units
    assert wasserstein_1d(np.eye(8)[2], np.eye(8)[3], value_range=(0.0, 4000.0)) == pytest.approx(
        500
    )
    assert wasserstein_1d(p, p) == 0.0
    real = [intensity_histogram(p) for p in (np.linspace(0, 0.5, 1000), np.linspace(0.2, 1, 1000))]
    assert wasserstein_1d(*real) == pytest.approx(
        stats.wasserstein_distance(centres, centres, *real), rel=1e-9
    )


@pytest.mark.parametrize(
    ("p", "q", "message"),
    [
        (np.ones(4), np.ones(5), "same bins"),
        (np.array([1.0, -1.0, 1.0]), np.ones(3), "non-negative"),
        (np.zeros(3), np.ones(3), "positive sum"),
    ],
)
def test_wasserstein_rejects_bad_histograms(p: np.ndarray, q: np.ndarray, message: str) -> None:
    with pytest.raises(HarmonizeError, match=message):
        wasserstein_1d(p, q)
