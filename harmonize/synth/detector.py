"""The detector and processing chain of one site: attenuation map -> stored pixel values.

Physics, in order: primary transmission ``exp(-A)`` plus a broad scatter veil; quantum noise
(Gaussian approximation of Poisson, variance proportional to the signal); blur (a Gaussian MTF,
applied after the quantum noise as in a scintillator, so the noise is correlated); electronic
noise; log read-out; the site's response curve; its post-processing stages (``processing.py``:
multi-scale band gains, unsharp masking, correlated noise, grid lines, shutters, markers);
quantisation to ``bits_stored``; MONOCHROME1 inversion. Everything after the upsampling runs at
the full matrix.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from harmonize.synth.arrays import FloatArray, StoredArray
from harmonize.synth.processing import apply_stages
from harmonize.synth.profiles import SiteProfile
from harmonize.synth.resample import resize

_SCATTER_GRID = 64  # scatter is smooth: computed on a small grid
_SCATTER_SIGMA = 0.08  # fraction of the field


def expose(
    attenuation: FloatArray,
    profile: SiteProfile,
    rng: np.random.Generator,
    matrix: int | None = None,
    dose: float = 1.0,
) -> FloatArray:
    """Detected, processed signal in [0, 1] (1 = most attenuated, as displayed in MONOCHROME2).

    Args:
        attenuation: line-integral map at any size; it is upsampled to ``matrix``.
        profile: the site's detector and processing.
        rng: source of the noise.
        matrix: output size; defaults to ``profile.matrix``. Noise and blur are rescaled as
            binning would (bigger pixels collect more photons and blur over fewer pixels).
        dose: relative exposure of this image (1 = the profile's nominal dose).
    """
    m = matrix or profile.matrix
    binning = profile.matrix / m
    primary_small = np.exp(-resize(attenuation, _SCATTER_GRID))
    scatter = ndimage.gaussian_filter(primary_small, _SCATTER_SIGMA * _SCATTER_GRID, mode="nearest")
    signal = np.exp(-resize(attenuation, m))
    if profile.scatter_fraction > 0:
        signal += resize(np.float32(profile.scatter_fraction) * scatter, m)
    photons = profile.noise.photons_per_pixel * binning**2 * dose
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    noise *= np.sqrt(signal * np.float32(1.0 / photons))
    signal += noise
    sigma = profile.blur_sigma_px / binning
    if sigma > 0.05:
        signal = ndimage.gaussian_filter(signal, sigma, mode="nearest", truncate=3.0)
    if profile.noise.electronic_sigma > 0:
        noise = rng.standard_normal(signal.shape, dtype=np.float32)
        noise *= np.float32(profile.noise.electronic_sigma / binning)
        signal += noise
    np.maximum(signal, np.float32(1e-5), out=signal)
    measured = np.log(signal, out=signal)
    np.negative(measured, out=measured)
    processed = np.clip(profile.response(measured), 0.0, 1.0, dtype=np.float32)
    return apply_stages(processed, profile.processing, profile.field_mm / m, rng)


def to_stored(processed: FloatArray, profile: SiteProfile) -> StoredArray:
    """Quantise ``processed`` (in [0, 1], bright = attenuating) to the profile's stored values,
    inverted for MONOCHROME1 (where the lowest value displays white)."""
    top = np.float32(profile.max_stored)
    if profile.photometric == "MONOCHROME1":
        processed = 1 - processed
    return np.rint(processed * top).astype(np.uint16)
