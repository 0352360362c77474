"""Tests for harmonize.dicom.values: every branch of the grayscale pipeline against pydicom's own
LUT functions, the VOI window, and the stored <-> display quantisation of derived images."""

from __future__ import annotations

import numpy as np
import pytest

from harmonize.dicom.decode import decode_dicom
from harmonize.dicom.values import display_to_stored, stored_to_display, window_to_unit

from dicom_samples import make_image, random_values, reference_display


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_minmax_branch_is_the_image_range(bits):
    values = random_values(bits, signed=False)
    image = decode_dicom(make_image(values, bits))
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta.voi_kind == "minmax"
    assert image.meta.window_center == (float(values.min()) + float(values.max())) / 2
    assert image.meta.window_width == float(values.max()) - float(values.min())


def test_window_branch_differs_from_minmax_branch():
    values = random_values(12, signed=False)
    windowed = decode_dicom(make_image(values, 12, window=(1000, 500)))
    full = decode_dicom(make_image(values, 12))
    assert (windowed.meta.voi_kind, full.meta.voi_kind) == ("window", "minmax")
    assert (windowed.meta.window_center, windowed.meta.window_width) == (1000.0, 500.0)
    np.testing.assert_array_equal(windowed.pixels[values <= 750], 0.0)
    np.testing.assert_array_equal(windowed.pixels[values >= 1250], 1.0)
    assert not np.allclose(windowed.pixels, full.pixels)


def test_invalid_window_width_falls_back_to_minmax():
    values = random_values(12, signed=False)
    image = decode_dicom(make_image(values, 12, window=(1000, 0)))
    assert image.meta.voi_kind == "minmax"


@pytest.mark.parametrize("window", [None, (2048, 4096)])
def test_monochrome1_brightest_stored_value_is_black(window):
    values = random_values(12, signed=False)
    image = decode_dicom(make_image(values, 12, photometric="MONOCHROME1", window=window))
    assert image.pixels[values == values.max()].max() == 0.0
    assert image.pixels[values == values.min()].min() == pytest.approx(1.0, abs=1e-6)
    mono2 = decode_dicom(make_image(values, 12, photometric="MONOCHROME2", window=window))
    np.testing.assert_allclose(image.pixels, 1.0 - mono2.pixels, atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions_match_pydicom(function):
    values = random_values(12, signed=False)
    data = make_image(values, 12, window=(1500, 1200), voi_function=function)
    np.testing.assert_allclose(decode_dicom(data).pixels, reference_display(data), atol=2e-6)


def test_rescale_is_applied_before_the_window():
    values = random_values(12, signed=False)
    data = make_image(values, 12, rescale=(2.0, -1024.0), window=(1000.0, 3000.0))
    image = decode_dicom(data)
    np.testing.assert_allclose(image.pixels, reference_display(data), atol=2e-6)
    modality = values * 2.0 - 1024.0
    np.testing.assert_array_equal(image.pixels[modality <= -500], 0.0)


def test_modality_and_voi_lut_sequences():
    values = random_values(8, signed=False)
    modality_lut = (16, 0, [4 * v for v in range(256)])  # stored -> 0..1020
    voi_lut = (12, 0, [min(v * 4, 4095) for v in range(1021)])  # 0..1020 -> 0..4080
    data = make_image(values, 8, modality_lut=modality_lut, voi_lut=voi_lut, window=(1, 1))
    image = decode_dicom(data)
    assert image.meta.voi_kind == "lut"  # the LUT wins over the window
    np.testing.assert_allclose(image.pixels, reference_display(data), atol=1e-6)
    np.testing.assert_allclose(image.pixels, 16.0 * values / 4095, atol=1e-6)


def test_window_to_unit_linear_hits_both_ends():
    values = np.arange(4096, dtype=np.uint16)
    unit = window_to_unit(values, center=2048, width=4096, function="LINEAR")
    np.testing.assert_allclose(unit, values / 4095, atol=1e-7)


def test_display_stored_inverse():
    pixels = np.linspace(0, 1, 4096, dtype=np.float32)
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        stored = display_to_stored(pixels, 12, photometric)
        assert stored.dtype == np.uint16 and stored.max() == 4095
        np.testing.assert_allclose(stored_to_display(stored, 12, photometric), pixels, atol=1e-6)
    assert display_to_stored(np.array([[-0.5, 1.5]]), 8, "MONOCHROME2").tolist() == [[0, 255]]
