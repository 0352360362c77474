"""The model card's validation of a trained generator, through the path ``harmonize run`` takes.

The generator is wrapped in ``NeuralHarmonizer`` (the inference class ``run`` loads) and applied
in each of its modes (``direct``: the generator, tiled when large; ``curve``: a monotone
intensity curve fitted to it) to the first ``validation_images`` source training images. Per
mode: SSIM(original, harmonized) with the manifest's ``SSIM_OPTIONS``, and the W1 distance of
each image's histogram to the target site's mean histogram after harmonization (before: once).

The result keeps direct mode's numbers at the top level (``run``'s default mode) and every
mode's under ``modes``::

    {"n_images": 8, "w1_to_target_before": 0.09, "w1_to_target_before_std": 0.01,
     "ssim_mean": 0.93, "ssim_std": 0.01, "w1_to_target_after": 0.02, ...,
     "modes": {"direct": {"ssim_mean": ..., ...}, "curve": {"ssim_mean": ..., ...}}}

A mode that cannot apply the generator (curve mode refuses a generator that makes negatives)
records ``{"error": "..."}`` instead of failing the training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harmonize.errors import ModelError
from harmonize.imaging.preprocess import from_uint16
from harmonize.methods.neural import NeuralHarmonizer
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram, wasserstein_1d
from harmonize.metrics.ssim import SSIM_OPTIONS, ssim
from harmonize.training.sharded_images import ShardedImages


def site_histogram(images: Sequence[np.ndarray]) -> np.ndarray:
    """The mean HIST_BINS-bin intensity histogram of uint16 training images (of sharded ones:
    from their shards' footers, without reading an image)."""
    if isinstance(images, ShardedImages) and (stored := images.histogram()) is not None:
        return stored
    return np.mean([intensity_histogram(from_uint16(im), bins=HIST_BINS) for im in images], axis=0)


def _w1_to(target_histogram: np.ndarray, image: np.ndarray) -> float:
    return wasserstein_1d(intensity_histogram(image, bins=HIST_BINS), target_histogram)


def _mean_and_std(name: str, values: list[float]) -> dict[str, float]:
    """``{name: mean, name_std: std}`` (SSIM's mean is called ``ssim_mean``)."""
    mean_key = "ssim_mean" if name == "ssim" else name
    return {mean_key: float(np.mean(values)), f"{name}_std": float(np.std(values))}


def _measure(
    harmonizer: NeuralHarmonizer, originals: list[np.ndarray], target_histogram: np.ndarray
) -> dict[str, float]:
    scores, after = [], []
    for original in originals:
        harmonized = harmonizer.transform(original)
        scores.append(float(ssim(original, harmonized, **SSIM_OPTIONS)))
        after.append(_w1_to(target_histogram, harmonized))
    return _mean_and_std("ssim", scores) | _mean_and_std("w1_to_target_after", after)


def validate_generator(
    harmonizer: NeuralHarmonizer, source_images: Sequence[np.ndarray], target_histogram: np.ndarray
) -> dict[str, Any]:
    """SSIM and W1-to-target of ``source_images`` (uint16 levels) harmonized in every mode of
    ``harmonizer`` (left in direct mode); the shape is the module's docstring's."""
    if not source_images:
        return {"n_images": 0}
    originals = [from_uint16(levels) for levels in source_images]
    before = [_w1_to(target_histogram, original) for original in originals]
    modes: dict[str, dict[str, Any]] = {}
    for mode in harmonizer.modes:
        harmonizer.set_mode(mode)
        try:
            modes[mode] = _measure(harmonizer, originals, target_histogram)
        except ModelError as err:  # e.g. curve mode and a generator that makes negatives
            modes[mode] = {"error": str(err)}
    harmonizer.set_mode("direct")
    return {
        "n_images": len(originals),
        **_mean_and_std("w1_to_target_before", before),
        **modes["direct"],
        "modes": modes,
    }
