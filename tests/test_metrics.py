"""Tests for harmonize.metrics against references: scikit-image (SSIM), numpy and scipy."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from PIL import Image
from scipy import ndimage, stats
from skimage.metrics import structural_similarity
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from harmonize.errors import HarmonizeError
from harmonize.metrics import (
    HIST_BINS,
    MetricInputError,
    auc_ci_delong,
    auc_difference_delong,
    intensity_histogram,
    roc_auc,
    roc_curve,
    ssim,
    ssim_map,
    wasserstein_1d,
)

from conftest import REAL_PNG_DIR

get_testdata_file = pytest.importorskip("pydicom.data").get_testdata_file

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
def radiographs() -> list[np.ndarray]:
    """The two real CR radiographs of pydicom-data, scaled to [0, 1], downsampled 3x, cropped."""
    images = []
    for name in ("RG3_UNCI.dcm", "RG1_UNCI.dcm"):
        pixels = pydicom.dcmread(get_testdata_file(name)).pixel_array.astype(np.float64)
        pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min())
        images.append(pixels[::3, ::3][:512, :448])  # not square: catches transposed axes
    return images


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
    from harmonize.metrics import _strip_ssim_reference, _window

    rng = np.random.default_rng(9)
    x = torch.from_numpy(np.stack([smooth_image((40, 52), rng) for _ in range(2)])).float()
    y = (x + 0.05 * torch.rand(x.shape)).clamp(0, 1)
    options = MODES[mode]
    window = _window(options.get("gaussian_weights", False), 1.5, None, not options)
    taps = (1.0 / window.size,) * window.size if window.box else window.taps
    constants = torch.tensor([1e-4, 9e-4, window.cov_norm])
    centre = x.mean(dim=(1, 2), keepdim=True)
    got = _strip_ssim_reference(x, y, centre, constants, taps, window.crop, stack_rows)
    expected = ssim_map(x, y, data_range=1.0, **options)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("uniform", [False, True])
@pytest.mark.parametrize(("n_images", "out_h", "crop"), [(1, 7, 0), (9, 300, 0), (5, 131, 2)])
def test_strips_cover_every_output_row_once(uniform: bool, n_images: int, out_h: int, crop: int):
    from harmonize.metrics import _StripPlan, _strips

    plan = _StripPlan(images=4, rows=64)
    counts = np.zeros((n_images, out_h), dtype=int)
    shapes = set()
    for s in _strips(n_images, out_h, crop, plan, uniform=uniform):
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


# -- histograms and Wasserstein ------------------------------------------------------------------
def test_intensity_histogram_equals_numpy_and_sums_to_one(radiographs: list[np.ndarray]) -> None:
    image = radiographs[0]
    hist = intensity_histogram(image)
    counts, _ = np.histogram(image, bins=HIST_BINS, range=(0.0, 1.0))
    assert hist.dtype == np.float64 and hist.shape == (HIST_BINS,)
    assert hist.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(hist, counts / counts.sum(), rtol=0, atol=1e-15)
    # a torch tensor gives the same
    np.testing.assert_array_equal(intensity_histogram(torch.from_numpy(image)), hist)


def test_intensity_histogram_clips_range_and_masks() -> None:
    image = np.array([[-0.5, 0.0, 0.1, 0.5], [0.99, 1.0, 2.0, 0.6]])
    hist = intensity_histogram(image, bins=4)
    np.testing.assert_array_equal(hist, np.array([3, 0, 2, 3]) / 8)  # -0.5 and 2.0 in end bins
    mask = np.array([[0, 0, 1, 1], [0, 0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(
        intensity_histogram(image, bins=4, mask=mask), [1 / 3, 0, 2 / 3, 0]
    )
    scaled = intensity_histogram(image * 1000, bins=4, value_range=(0.0, 1000.0))
    np.testing.assert_array_equal(scaled, hist)
    with_nan = np.concatenate([image, [[np.nan] * 4]])  # NaNs are not counted
    np.testing.assert_array_equal(intensity_histogram(with_nan, bins=4), hist)
    as_uint16 = intensity_histogram(np.array([0, 100, 65535], np.uint16), 2, (0.0, 65535.0))
    np.testing.assert_array_equal(as_uint16, [2 / 3, 1 / 3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bins": 0}, "bins"),
        ({"value_range": (1.0, 1.0)}, "low < high"),
        ({"mask": np.ones((3, 3), dtype=bool)}, "mask shape"),
        ({"mask": np.zeros((2, 2), dtype=bool)}, "empty"),
    ],
)
def test_intensity_histogram_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(HarmonizeError, match=message):
        intensity_histogram(np.full((2, 2), 0.5), **kwargs)


def test_wasserstein_equals_scipy_on_bin_centres() -> None:
    rng = np.random.default_rng(7)
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for _ in range(5):
        p, q = rng.random(HIST_BINS) ** 3, rng.random(HIST_BINS)
        expected = stats.wasserstein_distance(centres, centres, p, q)
        assert wasserstein_1d(p, q) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # a unit mass moved by one bin costs one bin width, in the value range's units
    assert wasserstein_1d(np.eye(8)[2], np.eye(8)[3], value_range=(0.0, 4000.0)) == pytest.approx(
        500
    )
    assert wasserstein_1d(p, p) == 0.0
    real = [intensity_histogram(p) for p in (np.linspace(0, 0.5, 1000), np.linspace(0.2, 1, 1000))]
    assert wasserstein_1d(*real) == pytest.approx(
        stats.wasserstein_distance(centres, centres, *real), rel=1e-9
    )


@pytest.mark.parametrize(
    ("p", "q", "message"),
    [
        (np.ones(4), np.ones(5), "same bins"),
        (np.array([1.0, -1.0, 1.0]), np.ones(3), "non-negative"),
        (np.zeros(3), np.ones(3), "positive sum"),
    ],
)
def test_wasserstein_rejects_bad_histograms(p: np.ndarray, q: np.ndarray, message: str) -> None:
    with pytest.raises(HarmonizeError, match=message):
        wasserstein_1d(p, q)


# -- ROC / AUC against scikit-learn ---------------------------------------------------------------
def scored_sample(
    rng: np.random.Generator, n: int, shift: float = 1.0, decimals: int | None = 1
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels (about 40% positive) and normal scores shifted up by ``shift`` for positives;
    rounded to ``decimals`` so that many scores tie."""
    labels = (rng.random(n) < 0.4).astype(np.int64)
    labels[:2], labels[2:4] = 1, 0  # both classes, at least two of each
    scores = rng.normal(shift * labels, 1.0)
    return labels, scores if decimals is None else np.round(scores, decimals)


def brute_force_delong(labels: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and DeLong covariance from the definition: the O(m n) kernel psi(x, y) = 1 if x > y,
    1/2 if equal, and placement values averaged over the other class (DeLong et al. 1988)."""
    pos, neg = labels == 1, labels == 0
    v10, v01 = [], []
    for s in scores:
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    aucs = np.array([v.mean() for v in v10])
    cov = np.cov(np.array(v10)) / pos.sum() + np.cov(np.array(v01)) / neg.sum()
    return aucs, np.atleast_2d(cov)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_and_curve_equal_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, scores = scored_sample(rng, 300, shift=0.7, decimals=1)
    assert len(np.unique(scores)) < 100  # many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-15)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    ref = sk_roc_curve(labels, scores)
    for ours, theirs in zip((fpr, tpr, thresholds), ref, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    full = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(full[1], sk_roc_curve(labels, scores, drop_intermediate=False)[1])
    # bool and pandas nullable labels mean the same
    assert roc_auc(labels.astype(bool), scores) == roc_auc(pd.array(labels, dtype="Int64"), scores)


def test_delong_equals_the_brute_force_definition() -> None:
    rng = np.random.default_rng(5)
    labels, a = scored_sample(rng, 250, shift=0.8, decimals=1)
    b = np.round(a + rng.normal(0.0, 0.8, a.size), 1)  # correlated with a, with ties
    aucs, cov = brute_force_delong(labels, a, b)
    auc, low, high = auc_ci_delong(labels, a)
    z = stats.norm.ppf(0.975)
    assert auc == pytest.approx(roc_auc_score(labels, a), abs=1e-12)
    assert auc == pytest.approx(aucs[0], abs=1e-12)
    assert (high - low) / 2 == pytest.approx(z * np.sqrt(cov[0, 0]), rel=1e-9)
    diff, d_low, d_high, p = auc_difference_delong(labels, a, b)
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert diff == pytest.approx(aucs[0] - aucs[1], abs=1e-12)
    assert (d_high - d_low) / 2 == pytest.approx(z * se, rel=1e-9)
    assert p == pytest.approx(2 * stats.norm.sf(abs(diff) / se), rel=1e-9)


def test_delong_variance_agrees_with_a_stratified_bootstrap() -> None:
    rng = np.random.default_rng(6)
    labels, scores = scored_sample(rng, 300, shift=1.0, decimals=2)
    auc, low, high = auc_ci_delong(labels, scores)
    se_delong = (high - low) / (2 * stats.norm.ppf(0.975))
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    boot = []
    for _ in range(600):  # stratified: resample positives and negatives separately
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        boot.append(roc_auc_score(labels[idx], scores[idx]))
    assert se_delong == pytest.approx(np.std(boot), rel=0.15)
    assert low < auc < high


def test_delong_interval_covers_and_narrows_with_n() -> None:
    rng = np.random.default_rng(7)
    widths = {}
    for n in (50, 2000):
        labels, scores = scored_sample(rng, n, shift=1.0, decimals=None)
        auc, low, high = auc_ci_delong(labels, scores)
        assert 0.0 <= low <= auc <= high <= 1.0
        assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        widths[n] = high - low
    assert widths[2000] < widths[50] / 3  # ~ 1/sqrt(n): about 6x narrower
    # Coverage: the true AUC of N(1, 1) vs N(0, 1) is Phi(1 / sqrt 2); 95% intervals of 300
    # samples of 120 must cover it about 95% of the time.
    true_auc = stats.norm.cdf(1 / np.sqrt(2))
    covered = []
    for _ in range(300):
        labels, scores = scored_sample(rng, 120, shift=1.0, decimals=None)
        _, low, high = auc_ci_delong(labels, scores)
        covered.append(low <= true_auc <= high)
    assert 0.90 <= np.mean(covered) <= 0.99


def test_delong_interval_is_clipped_and_level_widens_it() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert auc_ci_delong(labels, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(8)
    labels, scores = scored_sample(rng, 40, shift=3.0, decimals=None)
    auc, low, high = auc_ci_delong(labels, scores)
    assert high <= 1.0 and low < auc
    _, low99, high99 = auc_ci_delong(labels, scores, level=0.99)
    assert low99 < low and high99 >= high


def test_paired_delong_identical_and_different_scores() -> None:
    rng = np.random.default_rng(9)
    labels, scores = scored_sample(rng, 400, shift=1.0, decimals=2)
    assert auc_difference_delong(labels, scores, scores) == (0.0, 0.0, 0.0, 1.0)
    # a monotone transform ranks the images the same: no difference either
    assert auc_difference_delong(labels, np.exp(scores), scores).p_value == 1.0
    noise = rng.normal(0.0, 1.0, labels.size)
    diff, low, high, p = auc_difference_delong(labels, scores, noise)
    assert diff == pytest.approx(roc_auc_score(labels, scores) - roc_auc_score(labels, noise))
    assert diff > 0.2 and 0.0 < low < diff < high and p < 1e-6
    # swapping the arguments mirrors the result
    swapped = auc_difference_delong(labels, noise, scores)
    assert swapped.diff == pytest.approx(-diff) and swapped.p_value == pytest.approx(p)
    assert swapped.low == pytest.approx(-high) and swapped.high == pytest.approx(-low)
    # slightly different scores: a small difference, not significant
    close = scores + rng.normal(0.0, 0.05, labels.size)
    assert auc_difference_delong(labels, close, scores).p_value > 0.01


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "needs both classes, but all 3 labels are 1"),
        ([0, 0], [0.1, 0.2], "needs both classes, but all 2 labels are 0"),
        ([0, 1, 1], [0.1, 0.2], "differ in length: 3 labels, 2 scores"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN or infinite"),
        ([0, 1, 1], [0.1, np.inf, 0.3], "NaN or infinite"),
        ([0, np.nan, 1], [0.1, 0.2, 0.3], "labels contain 1 missing value"),
        ([0, 2, 1], [0.1, 0.2, 0.3], r"labels must be 0/1 \(or bool\), got \[2.0\]"),
        (["a", "b"], [0.1, 0.2], "labels must be numbers"),
        ([], [], "at least one sample"),
        ([[0, 1]], [[0.1, 0.2]], "one-dimensional"),
    ],
)
def test_roc_metrics_reject_bad_input(labels: list, scores: list, message: str) -> None:
    for call in (
        lambda: roc_auc(labels, scores),
        lambda: roc_curve(labels, scores),
        lambda: auc_ci_delong(labels, scores),
        lambda: auc_difference_delong(labels, scores, scores),
    ):
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert isinstance(info.value, MetricInputError)
        assert isinstance(info.value, HarmonizeError)  # the CLI's clean exit 2


def test_delong_needs_two_of_each_class_and_a_valid_level() -> None:
    labels, scores = [0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4]
    assert roc_auc(labels, scores) == 1.0  # the AUC itself is defined
    with pytest.raises(ValueError, match="at least 2 positives and 2 negatives, got 1 and 3"):
        auc_ci_delong(labels, scores)
    with pytest.raises(ValueError, match="at least 2 positives"):
        auc_difference_delong(labels, scores, scores)
    with pytest.raises(ValueError, match="level must be between 0 and 1, got 1.5"):
        auc_ci_delong([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], level=1.5)
    with pytest.raises(ValueError, match="scores #2 differ in length"):
        auc_difference_delong([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2])
