"""The monotone curve of curve mode: fitted by isotonic regression, applied through a LUT."""

from __future__ import annotations

import numpy as np
import torch

from harmonize.methods.curve import apply_curve, fit_monotone_curve


def test_fitted_curve_recovers_a_monotone_map_and_is_monotone_on_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    original = torch.rand(200_000, generator=gen)
    curve = original**0.5
    x, y = fit_monotone_curve(original, curve)
    assert np.all(np.diff(y) >= 0)
    np.testing.assert_allclose(y, x**0.5, atol=0.01)
    noisy = curve + 0.3 * torch.randn(200_000, generator=gen)
    _, y_noisy = fit_monotone_curve(original, noisy)
    assert np.all(np.diff(y_noisy) >= 0)
    applied = apply_curve(torch.tensor([0.0, 0.25, 1.0]), x, y)
    np.testing.assert_allclose(applied.numpy(), [y[0], 0.5, y[-1]], atol=0.01)
