"""Local mode: tile curves blended by tents, bounded band gains, applied at full resolution;
it follows a spatially varying generator where one curve cannot, and invents no structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmonize.errors import ModelError
from harmonize.methods.curve import apply_in_curve_mode
from harmonize.methods.local import (
    MAX_GAIN,
    apply_in_local_mode,
    apply_tile_curves,
    bands,
    fit_local,
    fit_tile_curves,
    grid_shape,
    tents,
)

MODEL = 64


def _chest(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth image with structure at several scales, values in (0, 1)."""
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.random((1, 1, size // 8, size // 8)).astype(np.float32))
    coarse = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return (0.2 + 0.4 * coarse + 0.3 * xx * yy).clamp(0.01, 0.99)


def _varying(x: torch.Tensor) -> torch.Tensor:
    """A generator whose tone curve changes across the image: gamma 0.5 left, 2 right."""
    w = x.shape[-1]
    ramp = torch.linspace(0, 1, w, device=x.device).reshape(1, 1, 1, w)
    return (1 - ramp) * x.clamp(0, 1) ** 0.5 + ramp * x.clamp(0, 1) ** 2


def test_tents_sum_to_one_and_peak_at_their_centres() -> None:
    weights = tents(100, 4, torch.device("cpu"))
    assert weights.shape == (4, 100)
    torch.testing.assert_close(weights.sum(0), torch.ones(100))
    assert float(weights[0, 0]) == 1.0 and float(weights[3, 99]) == 1.0  # beyond the centres
    assert (weights > 0).sum(0).max() <= 2  # at most two tiles along an axis
    assert grid_shape(128, 256) == (4, 8) and grid_shape(300, 300) == (4, 4)


def test_tile_curves_are_monotone_and_reproduce_a_global_curve() -> None:
    x = _chest(MODEL)
    luts = fit_tile_curves(x, x**0.5)
    assert (torch.diff(luts, dim=-1) >= -1e-6).all()  # every tile's curve is non-decreasing
    toned = apply_tile_curves(x, luts)
    assert float((toned - x**0.5).abs().mean()) < 0.01


def test_local_mode_follows_a_spatially_varying_generator_where_one_curve_cannot() -> None:
    full = _chest(4 * MODEL, seed=1)
    want = _varying(full)
    local = apply_in_local_mode(full, _varying, MODEL)
    curve = apply_in_curve_mode(full, _varying, MODEL)
    assert local.shape == full.shape
    local_error = float((local - want).abs().mean())
    curve_error = float((curve - want).abs().mean())
    assert local_error < 0.4 * curve_error, (local_error, curve_error)


def test_band_gains_follow_the_generators_detail_and_are_bounded() -> None:
    grain = torch.from_numpy(np.random.default_rng(3).normal(0, 0.02, (1, 1, MODEL, MODEL)))
    x = (_chest(MODEL, seed=2) + grain.float()).clamp(0, 1)  # detail at every scale
    detail = bands(x)
    assert fit_local(x, x).gains == pytest.approx((1.0, 1.0, 1.0), abs=0.05)
    sharpened = x + detail[0] + 0.5 * detail[1]  # bands 0 and 1 boosted
    transform = fit_local(x, sharpened)
    assert transform.gains[0] > 1.3 and transform.gains[1] > 1.1
    fitted = apply_tile_curves(x, transform.luts) + transform.correction
    assert float((fitted - sharpened).abs().mean()) < 0.5 * float((x - sharpened).abs().mean())
    softened = fit_local(x, F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False))
    assert softened.gains[0] < 0.6
    assert fit_local(x, x + 40 * detail[0]).gains[0] == MAX_GAIN  # bounded


def test_no_structure_is_invented() -> None:
    flat = torch.full((1, 1, 4 * MODEL, 4 * MODEL), 0.4)

    def patterned(x: torch.Tensor) -> torch.Tensor:  # a generator that paints a checkerboard
        yy, xx = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
        return x + 0.2 * (((yy // 4 + xx // 4) % 2).float() - 0.5)

    out = apply_in_local_mode(flat, patterned, MODEL)
    # A flat input gets no detail: at most a smooth tone change between tile centres.
    assert float(out.diff(dim=-1).abs().max()) < 1e-4 and float(out.diff(dim=-2).abs().max()) < 1e-4
    assert float(out.max() - out.min()) < 0.01
    # Finer detail than the model sees passes through: an impulse at full size survives.
    dotted = flat.clone()
    dotted[..., 100, 100] = 0.9
    out = apply_in_local_mode(dotted, lambda x: x**0.8, MODEL)
    assert float(out[..., 100, 100] - out[..., 100, 104]) > 0.3


def test_a_generator_that_makes_negatives_is_refused() -> None:
    with pytest.raises(ModelError, match="negative"):
        apply_in_local_mode(_chest(2 * MODEL), lambda x: 1 - x, MODEL)
