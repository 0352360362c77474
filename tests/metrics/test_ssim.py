"""Tests for harmonize.metrics.ssim (and its strip engine) against scikit-image's SSIM."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.metrics import structural_similarity

from harmonize.errors import HarmonizeError
from harmonize.metrics._ssim_compiled import strip_ssim_reference
from harmonize.metrics._ssim_plan import StripPlan, skimage_window, strips
from harmonize.metrics.ssim import SSIM_OPTIONS, ssim, ssim_map

from conftest import REAL_PNG_DIR

TOL = 1e-4  # the parity promised: |ours - skimage| per image mean
MODES = {
    "default": {},
    "gaussian": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},
}


def skimage_ssim(x: np.ndarray, y: np.ndarray, data_range: float, **options: object) -> float:
    """The reference, computed in float64 (what skimage does for float64 and integer inputs)."""
    return float(
        structural_similarity(
            np.asarray(x, dtype=np.float64),
            np.asarray(y, dtype=np.float64),
            data_range=data_range,
            **options,
        )
    )


def harmonized_like(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible 'harmonized' version of a [0, 1] image: gamma remap, slight blur, noise."""
    out = ndimage.gaussian_filter(image**0.8, 0.8) + rng.normal(0.0, 0.01, image.shape)
    return np.clip(out, 0.0, 1.0)


def smooth_image(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random [0, 1] image with structure at several scales."""
    field = sum(ndimage.gaussian_filter(rng.standard_normal(shape), s) * s for s in (2, 6, 20))
    return (field - field.min()) / (field.max() - field.min())


@pytest.fixture(scope="module")
def real_pngs() -> list[np.ndarray]:
    """One real 8-bit chest X-ray PNG from each source folder of tests/data/cxr-real."""
    paths = [
        sorted(folder.glob("*.png"))[0]
        for folder in sorted(REAL_PNG_DIR.iterdir())
        if folder.is_dir() and any(folder.glob("*.png"))
    ]
    return [np.asarray(Image.open(path).convert("L")) for path in paths]


# -- SSIM parity with scikit-image ----------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_ssim_matches_skimage_on_real_radiographs(radiographs: list[np.ndarray], mode: str) -> None:
    rng = np.random.default_rng(0)
    for image in radiographs:
        other = harmonized_like(image, rng)
        expected = skimage_ssim(image, other, 1.0, **MODES[mode])
        got = ssim(image, other, data_range=1.0, **MODES[mode])
        assert got.shape == ()
        assert 0.5 < expected < 0.99
        assert abs(got.item() - expected) < TOL


@pytest.mark.parametrize("mode", MODES)
def test_ssim_matches_skimage_on_real_8bit_pngs(real_pngs: list[np.ndarray], mode: str) -> None:
    # uint8 inputs, data_range=255: pairs of different patients (low SSIM) and remapped copies
    remapped = [
        np.clip(np.round(255 * (p / 255.0) ** 1.3), 0, 255).astype(np.uint8) for p in real_pngs
    ]
    others = real_pngs[1:] + real_pngs[:1] + remapped
    firsts = real_pngs + real_pngs
    got = ssim(np.stack(firsts), np.stack(others), data_range=255, **MODES[mode])
    expected = [skimage_ssim(a, b, 255, **MODES[mode]) for a, b in zip(firsts, others, strict=True)]
    assert got.shape == (len(firsts),)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("mode", MODES)
def test_ssim_matches_skimage_on_synthetic_distortions(mode: str) -> None:
    rng = np.random.default_rng(1)
    base = smooth_image((200, 232), rng)
    distorted = {
        "noise": np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1),
        "blur": ndimage.gaussian_filter(base, 2.0),
        "gamma": base**2.2,
        "inverted": 1.0 - base,
        "contrast": 0.25 + 0.5 * base,
        "unrelated": smooth_image(base.shape, rng),
    }
    batch_y = np.stack(list(distorted.values())).astype(np.float32)
    batch_x = np.broadcast_to(base, batch_y.shape).astype(np.float32)
    got = ssim(torch.from_numpy(batch_x), torch.from_numpy(batch_y), data_range=1.0, **MODES[mode])
    expected = [skimage_ssim(base, y, 1.0, **MODES[mode]) for y in distorted.values()]
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)
    # a batch is the same as one call per image
    pairs = zip(batch_x, batch_y, strict=True)
    single = [ssim(x, y, data_range=1.0, **MODES[mode]).item() for x, y in pairs]
    np.testing.assert_allclose(got.numpy(), single, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "options",
    [
        {"win_size": 11},
        {"win_size": 3, "K1": 0.02, "K2": 0.05},
        {"gaussian_weights": True},  # Gaussian window, sample covariance
        {"gaussian_weights": True, "sigma": 3.0, "use_sample_covariance": False},
        {"gaussian_weights": True, "win_size": 15, "use_sample_covariance": False},
    ],
)
def test_ssim_matches_skimage_for_other_windows(options: dict) -> None:
    rng = np.random.default_rng(2)
    x = smooth_image((96, 130), rng)
    y = np.clip(x + rng.normal(0, 0.03, x.shape), 0, 1)
    assert (
        abs(ssim(x, y, data_range=1.0, **options).item() - skimage_ssim(x, y, 1.0, **options)) < TOL
    )


@pytest.mark.parametrize("shape", [(7, 7), (7, 300), (300, 8), (11, 11)])
def test_ssim_matches_skimage_on_images_barely_larger_than_the_window(shape: tuple) -> None:
    rng = np.random.default_rng(8)
    x, y = rng.random(shape), rng.random(shape)
    for options in MODES.values():
        if min(shape) < 11 and options:
            continue  # the Gaussian window needs 11 pixels
        assert (
            abs(ssim(x, y, data_range=1.0, **options).item() - skimage_ssim(x, y, 1.0, **options))
            < TOL
        )


def test_ssim_uint16_scale_data() -> None:
    rng = np.random.default_rng(3)
    x = (smooth_image((160, 144), rng) * 50000 + 4000).astype(np.uint16)
    y = np.clip(x.astype(np.float64) * 1.1 + rng.normal(0, 900, x.shape), 0, 65535).astype(
        np.uint16
    )
    for options in MODES.values():
        expected = skimage_ssim(x, y, 65535, **options)
        assert abs(ssim(x, y, data_range=65535, **options).item() - expected) < TOL


def test_ssim_of_identical_images_is_one() -> None:
    rng = np.random.default_rng(4)
    images = np.stack([smooth_image((64, 80), rng), np.full((64, 80), 0.3), np.zeros((64, 80))])
    for options in MODES.values():
        np.testing.assert_allclose(ssim(images, images, data_range=1.0, **options), 1.0, atol=1e-6)


def test_ssim_map_matches_skimage_full_map() -> None:
    rng = np.random.default_rng(5)
    x = smooth_image((120, 100), rng)
    y = harmonized_like(x, rng)
    for options, pad in ((MODES["default"], 3), (MODES["gaussian"], 5)):
        _, full = structural_similarity(x, y, data_range=1.0, full=True, **options)
        got = ssim_map(x, y, data_range=1.0, **options)
        np.testing.assert_allclose(got.numpy(), full[pad:-pad, pad:-pad], rtol=0, atol=TOL)
        assert abs(got.double().mean().item() - ssim(x, y, data_range=1.0, **options).item()) < 1e-6


@pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")), reason="no C++ compiler"
)
def test_ssim_compiled_path_matches_skimage() -> None:
    rng = np.random.default_rng(6)
    x = np.stack([smooth_image((90, 100), rng) for _ in range(3)])
    y = np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1)
    options = MODES["gaussian"]  # one mode: each compiles for several seconds
    expected = [skimage_ssim(a, b, 1.0, **options) for a, b in zip(x, y, strict=True)]
    got = ssim(x, y, data_range=1.0, compiled=True, **options)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)
    got_map = ssim_map(x, y, data_range=1.0, compiled=True, **options)  # same shapes: no recompile
    expected_map = ssim_map(x, y, data_range=1.0, **options)
    np.testing.assert_allclose(got_map.numpy(), expected_map.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("stack_rows", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_compiled_strip_function_equals_the_eager_engine(mode: str, stack_rows: bool) -> None:
    # The function torch.compile fuses, run uncompiled: both of its branches, both windows.
    rng = np.random.default_rng(9)
    x = torch.from_numpy(np.stack([smooth_image((40, 52), rng) for _ in range(2)])).float()
    y = (x + 0.05 * torch.rand(x.shape)).clamp(0, 1)
    options = MODES[mode]
    window = skimage_window(options.get("gaussian_weights", False), 1.5, None, not options)
    taps = (1.0 / window.size,) * window.size if window.box else window.taps
    constants = torch.tensor([1e-4, 9e-4, window.cov_norm])
    centre = x.mean(dim=(1, 2), keepdim=True)
    got = strip_ssim_reference(x, y, centre, constants, taps, window.crop, stack_rows)
    expected = ssim_map(x, y, data_range=1.0, **options)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("uniform", [False, True])
@pytest.mark.parametrize(("n_images", "out_h", "crop"), [(1, 7, 0), (9, 300, 0), (5, 131, 2)])
def test_strips_cover_every_output_row_once(uniform: bool, n_images: int, out_h: int, crop: int):
    plan = StripPlan(images=4, rows=64)
    counts = np.zeros((n_images, out_h), dtype=int)
    shapes = set()
    for s in strips(n_images, out_h, crop, plan, uniform=uniform):
        counts[s.n0 + s.repeated_images : s.n0 + s.nb, s.r0 + s.repeated_rows : s.r0 + s.rows] += 1
        shapes.add((s.nb, s.rows))
    assert (counts[:, crop : out_h - crop] == 1).all() and counts.sum() == n_images * (
        out_h - 2 * crop
    )
    assert len(shapes) == 1 or not uniform


@pytest.mark.parametrize(
    ("x", "y", "options", "message"),
    [
        (np.zeros((32, 32)), np.zeros((32, 30)), {}, "same shape"),
        (np.zeros((6, 40)), np.zeros((6, 40)), {}, "does not fit"),
        (np.zeros((10, 10)), np.zeros((10, 10)), MODES["gaussian"], "does not fit"),
        (np.zeros((2, 2, 16, 16)), np.zeros((2, 2, 16, 16)), {}, r"\(H, W\) or \(N, H, W\)"),
        (np.zeros((16, 16)), np.zeros((16, 16)), {"win_size": 4}, "odd"),
        (
            np.zeros((32, 32)),
            np.zeros((32, 32)),
            {"gaussian_weights": True, "win_size": 7},
            "smaller than the Gaussian filter",
        ),
        (np.zeros((16, 16)), np.zeros((16, 16)), {"data_range": 0.0}, "data_range"),
        ([[0.0] * 16] * 16, np.zeros((16, 16)), {}, "numpy array"),
    ],
)
def test_ssim_rejects_bad_input(x: object, y: object, options: dict, message: str) -> None:
    options = {"data_range": 1.0, **options}
    with pytest.raises(HarmonizeError, match=message):
        ssim(x, y, **options)  # type: ignore[arg-type]


def test_ssim_options_are_skimage_options_and_unknown_ones_are_refused() -> None:
    rng = np.random.default_rng(10)
    x = smooth_image((64, 72), rng)
    y = harmonized_like(x, rng)
    expected = structural_similarity(x, y, **SSIM_OPTIONS)
    assert abs(ssim(x, y, **SSIM_OPTIONS).item() - expected) < TOL
    assert {"data_range": 1.0, **MODES["gaussian"]} == SSIM_OPTIONS
    with pytest.raises(TypeError, match="sigmaa"):
        ssim(x, y, data_range=1.0, sigmaa=2.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="data_range"):
        ssim_map(x, y)  # type: ignore[call-arg]
