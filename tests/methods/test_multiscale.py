"""Multi-scale matching: the bands sum to the image, the blur follows scipy's, each band's
energy is brought to the target's, images that already look right stay, scale invariance, and
the saved model reproduces the transform."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, zoom
from skimage.metrics import structural_similarity

from harmonize.errors import ConfigError
from harmonize.methods.histogram import HistogramMatching
from harmonize.methods.multiscale import (
    MultiScaleConfig,
    MultiScaleMatching,
    band_energies,
    blur,
    decompose,
)
from harmonize.models.registry import create_harmonizer, load_model

SIGMAS = MultiScaleConfig().sigmas


def _anatomy(rng: np.random.Generator, side: int = 256) -> np.ndarray:
    """Smooth structure plus fine texture, in [0.1, 0.9]."""
    coarse = gaussian_filter(rng.random((side, side)), side / 16)
    fine = gaussian_filter(rng.random((side, side)), 1.0)
    image = (coarse - coarse.mean()) * 8 + (fine - fine.mean()) * 2 + 0.5
    return np.clip(image, 0.1, 0.9).astype(np.float32)


def _processed(image: np.ndarray, fine_gain: float) -> np.ndarray:
    """Another vendor's processing: the finest bands scaled by ``fine_gain``."""
    bands, rest = decompose(image, SIGMAS)
    out = rest + fine_gain * (bands[0] + bands[1]) + sum(bands[2:])
    return np.clip(out, 0, 1).astype(np.float32)


def test_bands_sum_to_the_image_and_the_blur_follows_scipy() -> None:
    image = _anatomy(np.random.default_rng(0), 512)
    bands, rest = decompose(image, SIGMAS)
    assert np.allclose(sum(bands) + rest, image, atol=1e-6)
    inner = (slice(64, -64), slice(64, -64))
    for sigma in (2.0, 8.0, 16.0):
        exact = gaussian_filter(image, sigma, mode="nearest")
        assert np.abs(blur(image, sigma) - exact)[inner].max() < 2e-3


def test_each_band_is_brought_to_the_targets_energy_and_the_target_stays() -> None:
    rng = np.random.default_rng(1)
    target = [_anatomy(rng) for _ in range(8)]
    model = MultiScaleMatching().fit(target)
    wanted = np.exp(model.fitted_values()[model.config.levels :])
    boosted, damped = _processed(_anatomy(rng), 2.5), _processed(_anatomy(rng), 0.4)
    before = band_energies(decompose(boosted, SIGMAS)[0])
    after = band_energies(decompose(model.transform(boosted), SIGMAS)[0])
    # Excess fine detail is damped most of the way to the target's energy ...
    for k in (0, 1):
        assert abs(np.log(after[k] / wanted[k])) < 0.5 * abs(np.log(before[k] / wanted[k]))
    # ... and missing detail is not boosted by default (it would be mostly noise); when asked to.
    assert np.all(model.gains(decompose(damped, SIGMAS)[0])[:2] == 1.0)
    both = MultiScaleMatching(MultiScaleConfig(max_gain=3.0)).fit(target)
    assert np.all(both.gains(decompose(damped, SIGMAS)[0])[:2] > 1.5)
    # An image of the target site: gains near 1, and the output is nearly the input.
    own = _anatomy(rng)
    gains = model.gains(decompose(own, SIGMAS)[0])
    assert np.all(np.abs(np.log(gains)) < 0.25)
    assert structural_similarity(own, model.transform(own), data_range=1.0) > 0.95


def test_without_band_differences_it_is_histogram_matching() -> None:
    rng = np.random.default_rng(2)
    target = [_anatomy(rng) for _ in range(4)]
    model = MultiScaleMatching(MultiScaleConfig(min_gain=1.0, max_gain=1.0)).fit(target)
    histogram = HistogramMatching().fit(target)
    source = _processed(_anatomy(rng), 3.0) ** 2
    assert np.allclose(model.transform(source), histogram.transform(source), atol=5e-4)


def test_the_gains_do_not_depend_on_the_image_size() -> None:
    rng = np.random.default_rng(3)
    model_images = [_anatomy(rng) for _ in range(4)]
    source = _processed(_anatomy(rng), 2.0)
    larger = zoom(source, 2, order=1)
    model = MultiScaleMatching(MultiScaleConfig(max_gain=3.0)).fit(model_images)
    small = model.gains(decompose(source, SIGMAS)[0])
    large = model.gains(decompose(larger, SIGMAS)[0])
    # The same anatomy cut at the same relative scales (bilinear upsampling softens the finest).
    assert np.all(np.abs(np.log(small[1:] / large[1:])) < 0.3)


def test_the_saved_model_reproduces_the_transform(tmp_path) -> None:
    rng = np.random.default_rng(4)
    model = create_harmonizer("multiscale", {"sigmas": [1, 4, 16]})
    model.fit([_anatomy(rng) for _ in range(3)])
    model.save(str(tmp_path / "m"))
    loaded = load_model(str(tmp_path / "m"), expected_method="multiscale").harmonizer
    image = _processed(_anatomy(rng), 2.0)
    assert np.array_equal(loaded.transform(image), model.transform(image))
    order = np.argsort(image, axis=None)  # not monotone (bands move), but bounded
    assert model.transform(image).ravel()[order].min() >= 0.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sigmas": [2, 1]}, "increasing"),
        ({"sigmas": []}, "increasing"),
        ({"max_gain": 0.9}, "0 < min_gain <= 1 <= max_gain"),
        ({"min_gain": 0.0}, "0 < min_gain <= 1 <= max_gain"),
        ({"levels": 2}, "levels"),
    ],
)
def test_bad_configs_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MultiScaleConfig(**values)
