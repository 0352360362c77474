"""Local mode: the generator's translation distilled into a local intensity transform, applied
to the original at full resolution.

At model resolution the generator's output ``g`` and the original ``x`` are compared on a coarse
grid of tiles. Each tile gets its own monotone curve (``x -> g`` over the pixels around its
centre, weighted by a tent that reaches the neighbouring centres; bins a tile barely sees fall
back to the whole image's curve), and the curves are blended between tile centres with the same
bilinear tents, as CLAHE interpolates its tiles. Then the detail bands that the model resolution
holds (differences of Gaussians, 0.5-1, 1-2 and 2-4 model pixels) of the curve output are
scaled by one gain each, fitted by least squares to the generator's bands and bounded to
[1 / ``MAX_GAIN``, ``MAX_GAIN``].

At full resolution: every pixel's value goes through its (at most four) tiles' curves, a 16-bit
lookup table each, blended by its tent weights; the band correction, computed at model
resolution from the input's own detail, is upsampled and added. Each output pixel is an
increasing function of the input at that pixel plus a bounded multiple of the input's own
detail: nothing the input does not hold can appear, and detail finer than the model resolution
passes unchanged. The cost stays near curve mode's (four lookups a pixel instead of one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from harmonize.methods.curve import (
    LUT_LEVELS,
    check_keeps_order,
    resize_to_model,
)

GRID = 4  # tiles along the short side (more along the long side of a non-square image)
MAX_GAIN = 3.0  # band gains are bounded to [1 / MAX_GAIN, MAX_GAIN]
TILE_BINS = 64  # intensity bins of a tile's curve
#: In every bin of a tile's curve, the whole image's curve counts as this share of the tile's
#: mean pixel weight per occupied bin: bins a tile barely sees follow the image's curve.
SHRINK = 0.25
RIDGE = 0.05  # the band gains' regularization (a share of each band's energy)
BAND_SIGMAS = (0.5, 1.0, 2.0, 4.0)  # model pixels: bands between consecutive scales


class LocalTransform(NamedTuple):
    """What local mode fitted at model resolution."""

    luts: torch.Tensor  # (rows, cols, LUT_LEVELS): each tile's curve as a lookup table
    gains: tuple[float, ...]  # one per band of BAND_SIGMAS
    correction: torch.Tensor  # (1, 1, h, w): the band correction at model resolution


def tents(size: int, tiles: int, device: torch.device) -> torch.Tensor:
    """(tiles, size) bilinear weights of tile centres along one axis; they sum to 1 at every
    position, and beyond the first and last centres the nearest tile takes it all."""
    centres = (torch.arange(tiles, device=device, dtype=torch.float32) + 0.5) * (size / tiles)
    position = (torch.arange(size, device=device, dtype=torch.float32) + 0.5).clamp(
        float(centres[0]), float(centres[-1])
    )
    spacing = size / tiles
    return (1.0 - (position[None, :] - centres[:, None]).abs() / spacing).clamp(min=0.0)


def grid_shape(h: int, w: int) -> tuple[int, int]:
    short = min(h, w)
    return max(1, round(GRID * h / short)), max(1, round(GRID * w / short))


def _isotonic(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    from sklearn.isotonic import IsotonicRegression

    if x.size == 1:
        return y
    fit = IsotonicRegression(increasing=True, out_of_bounds="clip")
    return np.asarray(fit.fit(x, y, sample_weight=weight).predict(x))


def _extended(levels: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The curve through the knots at ``levels``, continued with slope 1 beyond them (values
    the model-size image never reached, as full-size detail does, keep their contrast)."""
    inside = np.interp(levels, x, y)
    below, above = levels < x[0], levels > x[-1]
    inside[below] = y[0] + (levels[below] - x[0])
    inside[above] = y[-1] + (levels[above] - x[-1])
    return np.clip(inside, 0.0, 1.0)


def fit_tile_curves(original: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """(rows, cols, LUT_LEVELS) lookup tables: each tile's monotone curve (see the module
    docstring), fitted to the pixel pairs of ``original`` and ``generated`` (1, 1, h, w)."""
    h, w = original.shape[-2:]
    rows, cols = grid_shape(h, w)
    o = original.reshape(h, w).double().clamp(0, 1)
    g = generated.reshape(h, w).double().clamp(0, 1)
    wy, wx = tents(h, rows, o.device).double(), tents(w, cols, o.device).double()
    index = (o * TILE_BINS).long().clamp_(max=TILE_BINS - 1).reshape(-1)
    tile_weight = (wy[:, None, :, None] * wx[None, :, None, :]).reshape(rows * cols, h * w)

    def binned(values: torch.Tensor) -> np.ndarray:  # (tiles, bins) weighted sums per bin
        sums = [torch.bincount(index, t * values, TILE_BINS) for t in tile_weight]
        return torch.stack(sums).cpu().numpy()

    counts, sum_g = binned(torch.ones_like(o).reshape(-1)), binned(g.reshape(-1))
    total = counts.sum(0)  # the tents sum to 1 at every pixel: the whole image's counts
    occupied = total > 0
    sum_o = torch.bincount(index, o.reshape(-1), TILE_BINS).cpu().numpy()
    x_all = sum_o[occupied] / total[occupied]
    y_global = _isotonic(x_all, sum_g.sum(0)[occupied] / total[occupied], total[occupied])
    n_tile, g_tile = counts[:, occupied], sum_g[:, occupied]
    levels = np.linspace(0.0, 1.0, LUT_LEVELS)
    luts = np.empty((rows * cols, LUT_LEVELS), dtype=np.float32)
    for k in range(rows * cols):
        # A bin the tile barely sees leans on the whole image's curve.
        prior = SHRINK * n_tile[k].sum() / max(1, int((n_tile[k] > 0).sum()))
        y = (g_tile[k] + prior * y_global) / (n_tile[k] + prior)
        y_fit = _isotonic(x_all, y, n_tile[k] + prior)
        luts[k] = _extended(levels, x_all, y_fit)
    return torch.from_numpy(luts).reshape(rows, cols, LUT_LEVELS).to(original.device)


def apply_tile_curves(image: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """The tiles' curves applied to ``image`` (1, 1, H, W) in [0, 1] at any size, blended by
    the tents of its own size: each pixel goes through at most four lookup tables."""
    h, w = image.shape[-2:]
    rows, cols, levels = luts.shape
    wy, wx = tents(h, rows, image.device), tents(w, cols, image.device)
    index = (image.reshape(h, w).clamp(0, 1) * (levels - 1) + 0.5).long()
    out = torch.zeros((h, w), dtype=torch.float32, device=image.device)
    for i in range(rows):
        ys = wy[i].nonzero().reshape(-1)
        y0, y1 = int(ys[0]), int(ys[-1]) + 1
        for j in range(cols):
            xs = wx[j].nonzero().reshape(-1)
            x0, x1 = int(xs[0]), int(xs[-1]) + 1
            weight = wy[i, y0:y1, None] * wx[j, None, x0:x1]
            out[y0:y1, x0:x1] += weight * luts[i, j][index[y0:y1, x0:x1]]
    return out.reshape(1, 1, h, w)


def _gaussian(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(image, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, kernel.reshape(1, 1, 1, -1))
    return F.conv2d(out, kernel.reshape(1, 1, -1, 1))


def bands(image: torch.Tensor) -> list[torch.Tensor]:
    """Differences of Gaussians between consecutive ``BAND_SIGMAS`` (model pixels)."""
    blurred = [_gaussian(image, s) for s in BAND_SIGMAS]
    return [fine - coarse for fine, coarse in zip(blurred, blurred[1:], strict=False)]


def fit_band_gains(toned: torch.Tensor, generated: torch.Tensor) -> tuple[float, ...]:
    """The gains that best turn the toned image into the generator's output by scaling its
    bands: ridge least squares of ``generated - toned`` on the bands of ``toned``, jointly (a
    generator that scales band b by k gets a gain near k), each bounded to [1 / MAX_GAIN,
    MAX_GAIN]."""
    basis = torch.stack([b.reshape(-1) for b in bands(toned)]).double()  # (bands, pixels)
    residual = (generated - toned).reshape(-1).double()
    gram = basis @ basis.T
    # Ridge towards gain 1, relative to each band's energy: neighbouring bands overlap, and a
    # band that explains little of the residual must not swing.
    ridge = torch.diag(RIDGE * gram.diagonal() + 1e-12)
    coefficients = torch.linalg.solve(gram + ridge, basis @ residual)
    return tuple(min(MAX_GAIN, max(1.0 / MAX_GAIN, 1.0 + float(c))) for c in coefficients)


def fit_local(small: torch.Tensor, generated: torch.Tensor) -> LocalTransform:
    """Local mode's transform from the original and the generator's output at model size."""
    check_keeps_order(small, generated)
    luts = fit_tile_curves(small, generated)
    toned = apply_tile_curves(small, luts)
    gains = fit_band_gains(toned, generated)
    correction = sum(
        ((gain - 1.0) * band for gain, band in zip(gains, bands(toned), strict=True)),
        torch.zeros_like(toned),
    )
    return LocalTransform(luts, gains, correction)


def apply_in_local_mode(
    x01: torch.Tensor, generate: Callable[[torch.Tensor], torch.Tensor], model_size: int
) -> torch.Tensor:
    """Harmonize (1, 1, H, W) display values: ``generate`` on the image resized to short side
    ``model_size`` (never enlarged), the local transform fitted to its output and applied to
    the full-resolution original."""
    small = resize_to_model(x01, model_size)
    transform = fit_local(small, generate(small))
    toned = apply_tile_curves(x01, transform.luts)
    correction = transform.correction
    if correction.shape[-2:] != x01.shape[-2:]:
        correction = F.interpolate(
            correction, size=x01.shape[-2:], mode="bilinear", align_corners=False
        )
    return (toned + correction).clamp(0, 1)
