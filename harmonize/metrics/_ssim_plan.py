"""How the SSIM strip engine shapes its work: the window in skimage's terms, and the strips.

The engine (`harmonize.metrics.ssim`, with `_ssim_eager` or `_ssim_compiled`) filters a batch in
strips of output rows of a few images at a time, small enough that the strip's four moment maps
stay in cache. `StripPlan` sizes the strips for a batch shape and `strips` lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harmonize.errors import HarmonizeError

# A strip is _STRIP_ROWS output rows of as many images as keep its stack of four moment maps
# under _STRIP_FLOATS float32 values (2.5 MiB): small enough to stay in cache through the two dozen
# passes over it, large enough that the fixed cost of each torch operation stays small.
_STRIP_ROWS = 64
_STRIP_FLOATS = 640 * 1024


@dataclass(frozen=True)
class Window:
    """The SSIM window in skimage's terms, reduced to what the strip engine needs."""

    taps: tuple[float, ...]  # separable 1-D filter; the 2-D window is the outer product
    crop: int  # skimage's border crop minus the filter radius (0 unless win_size > filter)
    cov_norm: float  # NP / (NP - 1) for the sample covariance, 1 for the population one
    box: bool  # all taps are 1: a box sum, run as doubling sums instead of weighted adds

    @property
    def size(self) -> int:
        return len(self.taps)

    @property
    def scale(self) -> float:
        """The 2-D filter's weight sum: k*k for box sums, 1 for normalized Gaussian taps."""
        return math.fsum(self.taps) ** 2


def skimage_window(
    gaussian_weights: bool, sigma: float, win_size: int | None, use_sample_covariance: bool
) -> Window:
    """The window skimage's structural_similarity uses for these arguments."""
    if sigma <= 0:
        raise HarmonizeError(f"SSIM sigma must be positive, got {sigma}")
    if gaussian_weights:
        radius = int(3.5 * sigma + 0.5)  # scipy.ndimage.gaussian_filter with truncate=3.5
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        weights = np.exp(-0.5 * offsets**2 / sigma**2)
        taps = tuple(float(w) for w in weights / weights.sum())
        win_size = 2 * radius + 1 if win_size is None else win_size
    else:
        win_size = 7 if win_size is None else win_size
        taps = (1.0,) * win_size
        radius = (win_size - 1) // 2
    if win_size < 1 or win_size % 2 == 0:
        raise HarmonizeError(f"SSIM win_size must be a positive odd number, got {win_size}")
    crop = (win_size - 1) // 2
    if crop < radius:
        raise HarmonizeError(
            f"SSIM win_size={win_size} is smaller than the Gaussian filter "
            f"({2 * radius + 1} taps for sigma={sigma}); use win_size >= {2 * radius + 1} or "
            "leave it unset"
        )
    n_points = win_size**2
    cov_norm = n_points / (n_points - 1) if use_sample_covariance and n_points > 1 else 1.0
    return Window(taps=taps, crop=crop - radius, cov_norm=cov_norm, box=not gaussian_weights)


@dataclass(frozen=True)
class StripPlan:
    """How the engine cuts a batch: images per chunk and filtered output rows per strip."""

    images: int
    rows: int

    @staticmethod
    def for_shape(n_images: int, height: int, width: int, k: int) -> StripPlan:
        rows = min(max(_STRIP_ROWS, 4 * (k - 1)), height - k + 1)
        stack = 4 * (rows + k - 1) * width  # floats in one image's strip of four maps
        images = max(1, min(n_images, _STRIP_FLOATS // stack))
        return StripPlan(images=images, rows=rows)


@dataclass(frozen=True)
class Strip:
    """One unit of work: filtered output rows [r0, r0 + rows) of images [n0, n0 + nb).

    ``repeated_images`` / ``repeated_rows``: how many leading images / rows an earlier strip has
    already done, not to be counted again (non-zero only in uniform plans, see ``strips``).
    """

    n0: int
    nb: int
    r0: int
    rows: int
    repeated_images: int = 0
    repeated_rows: int = 0


def strips(
    n_images: int, out_h: int, crop: int, plan: StripPlan, uniform: bool = False
) -> list[Strip]:
    """The strips covering output rows [crop, out_h - crop) of every image.

    With ``uniform`` every strip has the same shape (the last strip and chunk start earlier and
    overlap the previous ones), so a shape-specialized compiled kernel serves them all.
    """
    images, rows = min(plan.images, n_images), min(plan.rows, out_h - 2 * crop)
    result = []
    for n0 in range(0, n_images, images):
        for r0 in range(crop, out_h - crop, rows):
            nb, nr = min(images, n_images - n0), min(rows, out_h - crop - r0)
            if uniform:
                start_n, start_r = n0 + nb - images, r0 + nr - rows
                result.append(Strip(start_n, images, start_r, rows, images - nb, rows - nr))
            else:
                result.append(Strip(n0, nb, r0, nr))
    return result
