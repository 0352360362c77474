"""Curve mode: a monotone intensity curve fitted to a generator's output, applied at full size.

The generator runs on the image resized to model resolution; the (original, generated) pixel
pairs are grouped by original intensity (bin means), an isotonic regression makes the curve
non-decreasing, and the curve is applied to the full-resolution original through a 16-bit lookup
table. No structure can be invented, and the cost per image barely grows with its size. A
generator that learnt a negative image cannot be followed by an increasing curve:
``check_keeps_order`` refuses it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from harmonize.errors import ModelError

CURVE_BINS = 256  # intensity bins of the fitted curve (display range [0, 1])
LUT_LEVELS = 65536  # the curve is applied through a 16-bit lookup table (DICOM has <= 16 bits)


def fit_monotone_curve(
    original: torch.Tensor, generated: torch.Tensor, bins: int = CURVE_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) knots of a non-decreasing curve y = f(x) fitted to pixel pairs in [0, 1].

    Pixels are grouped by original intensity into ``bins`` bins; each occupied bin contributes
    its mean original and mean generated value, weighted by its pixel count, to an isotonic
    regression (pool-adjacent-violators)."""
    o = original.reshape(-1).float().clamp(0, 1)
    g = generated.reshape(-1).float().clamp(0, 1)
    idx = (o * bins).long().clamp_(max=bins - 1)
    counts = torch.bincount(idx, minlength=bins).double()
    sum_o = torch.zeros(bins, dtype=torch.float64, device=o.device).index_add_(0, idx, o.double())
    sum_g = torch.zeros(bins, dtype=torch.float64, device=o.device).index_add_(0, idx, g.double())
    occupied = counts > 0
    n = counts[occupied].cpu().numpy()
    x = (sum_o[occupied] / counts[occupied]).cpu().numpy()
    y = (sum_g[occupied] / counts[occupied]).cpu().numpy()
    if x.size == 1:  # a flat image: the curve is one point
        return x, y
    from sklearn.isotonic import IsotonicRegression

    y_fit = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(x, y, sample_weight=n)
    return x, y_fit.predict(x)


#: Curve mode refuses a generator whose output correlates below this with its input: an
#: increasing curve cannot follow a negative image and would flatten it. Untrained generators
#: score about -0.2 to 0.5; a generator that learnt the negative of its input, about -0.9.
MIN_CURVE_CORRELATION = -0.5


def check_keeps_order(original: torch.Tensor, generated: torch.Tensor) -> None:
    """Raise ModelError when ``generated`` is (roughly) a negative of ``original``: their
    pixel correlation is below ``MIN_CURVE_CORRELATION``."""
    pair = torch.stack([original.reshape(-1).double(), generated.reshape(-1).double()])
    r = float(torch.corrcoef(pair)[0, 1])
    if r < MIN_CURVE_CORRELATION:  # NaN (a flat image) passes: its curve is one point
        raise ModelError(
            f"the generator turns this image into a negative (pixel correlation {r:.2f} with the "
            "original), which curve mode cannot follow; the model learnt an inverted mapping: "
            "check its card's validation SSIM and retrain (for UNIT keep 3 discriminator scales)"
        )


def apply_curve(image: torch.Tensor, knots_x: np.ndarray, knots_y: np.ndarray) -> torch.Tensor:
    """The curve through the knots (linear between them, constant beyond) applied to every
    pixel of ``image`` in [0, 1] through a 16-bit lookup table."""
    levels = np.linspace(0.0, 1.0, LUT_LEVELS)
    lut = torch.from_numpy(np.interp(levels, knots_x, knots_y).astype(np.float32)).to(image.device)
    index = (image.clamp(0, 1) * (LUT_LEVELS - 1) + 0.5).long()
    return lut[index]


def resize_to_model(x01: torch.Tensor, model_size: int) -> torch.Tensor:
    """(1, 1, H, W) resized (antialiased) to short side ``model_size``; never enlarged."""
    h, w = x01.shape[-2:]
    scale = model_size / min(h, w)
    if scale >= 1.0:
        return x01
    size = (max(4, round(h * scale)), max(4, round(w * scale)))
    return F.interpolate(x01, size=size, mode="bilinear", antialias=True, align_corners=False)


def apply_in_curve_mode(
    x01: torch.Tensor, generate: Callable[[torch.Tensor], torch.Tensor], model_size: int
) -> torch.Tensor:
    """Harmonize (1, 1, H, W) display values: ``generate`` on the image resized to short side
    ``model_size`` (never enlarged), a monotone curve fitted to its output, the curve applied
    to the full-resolution original."""
    small = resize_to_model(x01, model_size)
    generated = generate(small)
    check_keeps_order(small, generated)
    knots_x, knots_y = fit_monotone_curve(small, generated)
    return apply_curve(x01, knots_x, knots_y)
