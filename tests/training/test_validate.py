"""The model card's validation: every mode of NeuralHarmonizer measured against references
(SSIM with the manifest's options, W1 to the target histogram), and a mode that cannot apply the
generator recorded instead of failing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harmonize.imaging.preprocess import from_uint16
from harmonize.methods.neural import NeuralHarmonizer
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram, wasserstein_1d
from harmonize.metrics.ssim import SSIM_OPTIONS, ssim
from harmonize.training.validate import site_histogram, validate_generator


class Negate(nn.Module):
    """A generator that makes negatives (x -> -x in model range: 1 - x on display values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def _harmonizer(generator: nn.Module) -> NeuralHarmonizer:
    return NeuralHarmonizer("cyclegan", {"load_size": 48}, generator, device="cpu")


def _w1(image: np.ndarray, histogram: np.ndarray) -> float:
    return wasserstein_1d(intensity_histogram(image, bins=HIST_BINS), histogram)


def test_the_target_histogram_is_the_sites_mean_histogram(data) -> None:
    histogram = site_histogram(data.target)
    assert histogram.shape == (HIST_BINS,) and histogram.sum() == pytest.approx(1.0)
    each = [intensity_histogram(from_uint16(im), bins=HIST_BINS) for im in data.target]
    np.testing.assert_allclose(histogram, np.mean(each, axis=0))


def test_an_identity_generator_keeps_every_image_in_both_modes(data) -> None:
    target = site_histogram(data.target)
    validation = validate_generator(_harmonizer(nn.Identity()), data.source[:3], target)
    before = [_w1(from_uint16(im), target) for im in data.source[:3]]
    assert validation["n_images"] == 3
    assert validation["w1_to_target_before"] == pytest.approx(np.mean(before))
    assert set(validation["modes"]) == {"direct", "curve", "local"}
    for mode in ("direct", "curve", "local"):
        measured = validation["modes"][mode]
        assert measured["ssim_mean"] == pytest.approx(1.0, abs=1e-4)
        assert measured["w1_to_target_after"] == pytest.approx(np.mean(before), abs=1e-3)
    assert validation["ssim_mean"] == validation["modes"]["direct"]["ssim_mean"]  # direct on top


def test_a_generator_that_makes_negatives_is_measured_direct_and_refused_in_curve_mode(
    data,
) -> None:
    target = site_histogram(data.target)
    harmonizer = _harmonizer(Negate())
    validation = validate_generator(harmonizer, data.source[:2], target)
    originals = [from_uint16(im) for im in data.source[:2]]
    negatives = [np.clip(1.0 - image, 0.0, 1.0) for image in originals]
    scores = [float(ssim(a, b, **SSIM_OPTIONS)) for a, b in zip(originals, negatives, strict=True)]
    direct = validation["modes"]["direct"]
    assert direct["ssim_mean"] == pytest.approx(np.mean(scores), abs=1e-5)
    assert direct["ssim_std"] == pytest.approx(np.std(scores), abs=1e-5)
    assert direct["w1_to_target_after"] == pytest.approx(
        np.mean([_w1(n, target) for n in negatives]), abs=1e-4
    )
    assert "negative" in validation["modes"]["curve"]["error"]
    assert "negative" in validation["modes"]["local"]["error"]
    assert harmonizer.mode == "direct"  # left as run's default
    assert validate_generator(harmonizer, [], target) == {"n_images": 0}
