"""Vendor post-processing stages: each does what it claims (band gains, unsharp masking against
scikit-image, the noise spectrum's slope, grid lines at their frequency), in profiles and YAML."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skimage.filters import unsharp_mask

from harmonize.errors import ConfigError
from harmonize.synth.detector import expose
from harmonize.synth.processing import (
    Bands,
    Grid,
    Marker,
    Noise,
    Shutters,
    Unsharp,
    apply_stages,
    band_weights,
    frequencies,
    parse_stages,
)
from harmonize.synth.profiles import PROFILES, profile_from_yaml, profile_to_dict, profile_to_yaml

PIXEL_MM = 0.25
RNG = np.random.default_rng


def _wave(cycles_per_mm: float, size: int = 512, axis: int = 1) -> np.ndarray:
    x = np.arange(size) * PIXEL_MM
    line = np.cos(2 * np.pi * cycles_per_mm * x).astype(np.float32)
    return np.broadcast_to(line[None, :] if axis == 1 else line[:, None], (size, size)).copy()


def _amplitude(image: np.ndarray, cycles_per_mm: float) -> float:
    """The amplitude of the cosine of ``cycles_per_mm`` along the rows, from the middle half."""
    middle = image[128:384, 128:384] - image[128:384, 128:384].mean()
    x = (np.arange(128, 384) * PIXEL_MM)[None, :]
    phase = np.exp(-2j * np.pi * cycles_per_mm * x)
    return float(2 * np.abs((middle * phase).mean()))


def test_the_band_weights_are_a_partition_of_unity_one_at_each_centre() -> None:
    f = frequencies((256, 256), PIXEL_MM)
    weights = band_weights(f, 3, finest_mm=0.5)
    assert len(weights) == 4
    np.testing.assert_allclose(sum(weights), 1.0, atol=1e-6)
    centres = np.array([[1 / (2 * 0.5 * 2**k) for k in range(3)]], np.float32)
    for k, w in enumerate(band_weights(centres, 3, finest_mm=0.5)[:3]):
        assert w[0, k] == pytest.approx(1.0)
    assert band_weights(np.zeros((1, 1), np.float32), 3, 0.5)[3][0, 0] == 1.0  # f = 0: residual


def test_unit_gains_leave_the_image_as_it_is() -> None:
    image = RNG(0).random((200, 300), dtype=np.float32)
    out = Bands(gains=(1.0, 1.0, 1.0), residual_gain=1.0)(image, PIXEL_MM, RNG(1))
    np.testing.assert_allclose(out, image, atol=1e-5)


@pytest.mark.parametrize("band", [0, 1, 2])
def test_each_band_is_scaled_by_its_gain(band: int) -> None:
    gains = (1.8, 1.4, 0.6)
    centre = 1 / (2 * 0.5 * 2**band)  # cycles/mm at band k's centre
    image = 0.5 + 0.1 * _wave(centre)
    out = Bands(gains=gains, finest_mm=0.5, residual_gain=1.0)(image, PIXEL_MM, RNG(0))
    ratio = _amplitude(out, centre) / _amplitude(image, centre)
    assert ratio == pytest.approx(gains[band], rel=0.02)
    assert float(out.mean()) == pytest.approx(float(image.mean()), abs=1e-3)  # level kept


def test_the_residual_gain_compresses_the_large_scale_range() -> None:
    coarse = 1 / 64.0  # a 64 mm period: far below the last band (centre 1/(2*0.5*4) cycles/mm)
    image = 0.5 + 0.2 * _wave(coarse)
    out = Bands(gains=(1.5, 1.2, 1.0), finest_mm=0.5, residual_gain=0.5)(image, PIXEL_MM, RNG(0))
    assert _amplitude(out, coarse) / _amplitude(image, coarse) == pytest.approx(0.5, rel=0.05)


def test_unsharp_masking_matches_scikit_image() -> None:
    image = RNG(2).random((128, 160), dtype=np.float32)
    stage = Unsharp(amount=0.8, sigma_mm=1.0)
    expected = unsharp_mask(image, radius=1.0 / PIXEL_MM, amount=0.8)  # clipped to [0, 1]
    out = apply_stages(image, (stage,), PIXEL_MM, RNG(0))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def _power_slope(noise: np.ndarray, low: float, high: float) -> float:
    """The slope of log power vs log radial frequency between ``low`` and ``high`` cycles/mm."""
    power = np.abs(np.fft.rfft2(noise)) ** 2
    f = frequencies(noise.shape, PIXEL_MM)
    keep = (f > low) & (f < high)
    return float(np.polyfit(np.log(f[keep]), np.log(power[keep]), 1)[0])


@pytest.mark.parametrize("slope", [0.0, 1.0, 2.0])
def test_the_noise_has_the_configured_spectrum_and_level(slope: float) -> None:
    flat = np.full((512, 512), 0.5, np.float32)
    stage = Noise(sigma=0.02, slope=slope, period_mm=50.0)
    noise = stage(flat, PIXEL_MM, RNG(3)) - flat
    assert float(noise.std()) == pytest.approx(0.02, rel=1e-3)
    assert abs(float(noise.mean())) < 1e-3
    assert -_power_slope(noise, 0.05, 1.8) == pytest.approx(slope, abs=0.1)


@pytest.mark.parametrize("axis", ["columns", "rows"])
def test_grid_lines_appear_at_the_configured_frequency_and_depth(axis: str) -> None:
    flat = np.full((512, 512), 0.5, np.float32)
    out = Grid(lines_per_mm=1.25, depth=0.03, axis=axis)(flat, PIXEL_MM, RNG(0))
    profile = (out - 0.5).mean(axis=0 if axis == "columns" else 1)
    spectrum = np.abs(np.fft.rfft(profile)) * 2 / len(profile)
    peak = int(np.argmax(spectrum))
    assert np.fft.rfftfreq(len(profile), d=PIXEL_MM)[peak] == pytest.approx(1.25)
    assert spectrum[peak] == pytest.approx(0.03, rel=1e-3)
    assert np.ptp(out, axis=0 if axis == "columns" else 1).max() < 1e-6  # straight lines


def test_stages_apply_in_order_and_the_result_is_clipped() -> None:
    image = RNG(4).random((64, 64), dtype=np.float32)
    stages = (Unsharp(amount=3.0, sigma_mm=2.0), Grid(depth=0.2))
    out = apply_stages(image, stages, PIXEL_MM, RNG(0))
    expected = np.clip(stages[1](stages[0](image, PIXEL_MM, RNG(0)), PIXEL_MM, RNG(0)), 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert apply_stages(image, (), PIXEL_MM, RNG(0)) is image


def test_a_profile_holds_its_stages_round_trips_them_and_renders_them() -> None:
    base = PROFILES["shenzhen-like"]
    assert base.processing == () and "processing" not in profile_to_dict(base)
    text = profile_to_yaml(base).replace("name: shenzhen-like", "name: processed") + (
        "processing:\n"
        "- {kind: bands, gains: [1.6, 1.3], finest_mm: 0.5, residual_gain: 0.7}\n"
        "- {kind: grid, lines_per_mm: 0.8, depth: 0.02}\n"
    )
    processed = profile_from_yaml(text)
    assert processed.processing == (
        Bands(gains=(1.6, 1.3), finest_mm=0.5, residual_gain=0.7),
        Grid(lines_per_mm=0.8, depth=0.02),
    )
    assert profile_from_yaml(profile_to_yaml(processed)) == processed
    attenuation = np.full((64, 64), 2.0, np.float32)
    plain = expose(attenuation, base, RNG(5), matrix=128)
    with_grid = dataclasses.replace(base, processing=(Grid(lines_per_mm=0.8, depth=0.02),))
    out = expose(attenuation, with_grid, RNG(5), matrix=128)
    pattern = Grid(lines_per_mm=0.8, depth=0.02)(np.zeros_like(plain), base.field_mm / 128, RNG(0))
    np.testing.assert_allclose(out, np.clip(plain + pattern, 0, 1), atol=1e-6)


def test_bad_stages_are_refused_in_one_line_naming_the_line() -> None:
    text = profile_to_yaml(PROFILES["mc-like"]) + "processing:\n- {kind: sharpen, amount: 2}\n"
    with pytest.raises(ConfigError, match=r"line \d+.*stage kind must be one of bands, grid"):
        profile_from_yaml(text, "site.yaml")
    with pytest.raises(ConfigError, match="unknown"):
        parse_stages([{"kind": "grid", "depht": 0.1}], "site")
    with pytest.raises(ConfigError, match="grid depth must be a number in"):
        parse_stages([{"kind": "grid", "depth": 2}], "site")
    with pytest.raises(ConfigError, match="must be a list of stages"):
        parse_stages({"kind": "grid"}, "site")


def test_shutters_fill_the_margins_and_leave_the_field() -> None:
    image = RNG(6).random((400, 300), dtype=np.float32)
    out = Shutters(margin_mm=10.0, margin_x_mm=5.0, fill=0.0, edge_mm=0.5)(image, PIXEL_MM, RNG(0))
    rows, cols = round(10.0 / PIXEL_MM), round(5.0 / PIXEL_MM)  # 40 and 20 pixels
    assert (out[: rows - 2] == 0).all() and (out[-(rows - 2) :] == 0).all()
    assert (out[:, : cols - 2] == 0).all() and (out[:, -(cols - 2) :] == 0).all()
    np.testing.assert_array_equal(
        out[rows + 2 : -rows - 2, cols + 2 : -cols - 2],
        image[rows + 2 : -rows - 2, cols + 2 : -cols - 2],
    )


@pytest.mark.parametrize("corner", ["top-left", "bottom-right"])
def test_the_marker_burns_in_its_letter_at_its_corner(corner: str) -> None:
    image = np.full((300, 300), 0.3, np.float32)
    stage = Marker(letter="L", height_mm=7.0, inset_mm=5.0, value=1.0, corner=corner)
    out = stage(image, PIXEL_MM, RNG(0))
    ys, xs = np.nonzero(out == 1.0)
    cell = round(7.0 / PIXEL_MM / 7)  # 4 pixels per bitmap cell
    assert (np.ptp(ys) + 1, np.ptp(xs) + 1) == (7 * cell, 5 * cell)  # the letter's box
    assert len(ys) == 11 * cell * cell  # L: 7 cells down, 4 more along the foot
    inset = round(5.0 / PIXEL_MM)
    if corner == "top-left":
        assert (ys.min(), xs.min()) == (inset, inset)
    else:
        assert (ys.max(), xs.max()) == (299 - inset, 299 - inset)
    assert (out[out != 1.0] == 0.3).all()
