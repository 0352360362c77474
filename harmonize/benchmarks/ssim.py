"""`harmonize bench ssim`: our batched torch SSIM against scikit-image on the same images.

For each size it builds one seeded set of radiograph-like image pairs (a smooth chest-like
silhouette with rib texture, paired with a gamma remap + blur + noise of itself, SSIM about
0.78-0.92), then times, in this process and on the same float32 arrays: scikit-image's
``structural_similarity`` one image at a time and ``harmonize.metrics.ssim`` on the whole batch,
in scikit-image's default mode (7x7 uniform window) and its Gaussian mode. Each timing is the
median of ``repeats`` runs after one warm-up run; the warm-up of scikit-image also gives the
reference values, and every row checks max |ours - scikit-image| <= 1e-4. With ``compiled`` the
torch.compile path is timed too (its warm-up includes compilation), when a compiler works here.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from harmonize.errors import HarmonizeError
from harmonize.metrics.ssim import ssim

PARITY_TOLERANCE = 1e-4
TARGET_SPEEDUP = 20.0
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "gaussian": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},
}


def radiograph_like_pair(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A float32 [0, 1] chest-radiograph-like image and a remapped, blurred, noisy copy of it."""
    v, u = np.mgrid[-1.0 : 1.0 : size * 1j, -1.0 : 1.0 : size * 1j]

    def soft_ellipse(cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
        r = np.hypot((u - cu) / ru, (v - cv) / rv)
        return 1.0 / (1.0 + np.exp((r - 1.0) * 12.0))

    shift = rng.uniform(-0.05, 0.05, 2)
    torso = soft_ellipse(shift[0], 0.1 + shift[1], 0.85, 1.05)
    lungs = soft_ellipse(-0.38 + shift[0], shift[1], 0.27, 0.6) + soft_ellipse(
        0.38 + shift[0], shift[1], 0.27, 0.6
    )
    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (v * rng.uniform(5, 7) + 0.35 * u**2))
    spine = np.exp(-(((u - shift[0]) / 0.08) ** 2))
    image = 0.05 + 0.55 * torso - 0.3 * lungs + 0.08 * lungs * ribs + 0.25 * spine * torso
    coarse = rng.standard_normal((size // 8 + 1, size // 8 + 1))
    texture = ndimage.zoom(coarse, size / coarse.shape[0], order=1)[:size, :size]
    image = np.clip(image + 0.03 * texture, 0.0, 1.0)
    gamma = rng.uniform(0.7, 0.9)
    other = ndimage.gaussian_filter(image**gamma, rng.uniform(0.6, 1.0))
    other = np.clip(other + rng.normal(0.0, rng.uniform(0.008, 0.02), image.shape), 0.0, 1.0)
    return image.astype(np.float32), other.astype(np.float32)


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_skimage(
    pairs: list[tuple[np.ndarray, np.ndarray]], options: dict[str, Any], repeats: int
) -> tuple[float, np.ndarray]:
    """(seconds per image, SSIM values) of scikit-image, one pair at a time."""
    from skimage.metrics import structural_similarity

    values: list[float] = []

    def run() -> None:
        values[:] = [structural_similarity(x, y, data_range=1.0, **options) for x, y in pairs]

    return _median_seconds(run, repeats) / len(pairs), np.asarray(values, dtype=np.float64)


def _time_ours(
    xs: torch.Tensor, ys: torch.Tensor, options: dict[str, Any], compiled: bool, repeats: int
) -> tuple[float, np.ndarray]:
    """(seconds per image, SSIM values) of harmonize.metrics.ssim on the whole batch."""
    values: list[torch.Tensor] = []

    def run() -> None:
        values[:] = [ssim(xs, ys, data_range=1.0, compiled=compiled, **options)]

    return _median_seconds(run, repeats) / xs.shape[0], values[0].numpy()


def _compiler_problem() -> str | None:
    """None when ``ssim(..., compiled=True)`` works here, else why not (one line)."""
    try:
        probe = torch.rand(1, 32, 32)
        ssim(probe, probe, data_range=1.0, compiled=True)
    except Exception as err:  # any failure of the optional compiler path means: skip it
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:160]
    return None


def run_ssim_benchmark(
    sizes: tuple[int, ...] = (512, 1024, 2048),
    n_images: int = 8,
    repeats: int = 3,
    seed: int = 0,
    echo: Callable[[str], Any] = print,
    compiled: bool = True,
) -> list[dict[str, Any]]:
    """Print and return one row per (size, mode, backend): ms per image, speed-up, parity.

    Raises:
        HarmonizeError: bad arguments, or a row whose max |ours - scikit-image| exceeds 1e-4
            (after the table is printed).
    """
    if not sizes or min(sizes) < 16 or n_images < 1 or repeats < 1:
        raise HarmonizeError(
            f"bench ssim needs sizes >= 16, n_images >= 1 and repeats >= 1, got sizes={sizes}, "
            f"n_images={n_images}, repeats={repeats}"
        )
    echo(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), scikit-image {version('scikit-image')}"
    )
    backends = ["eager"]
    if compiled:
        problem = _compiler_problem()
        if problem is None:
            backends.append("compiled")
        else:
            echo(f"  torch.compile path skipped: {problem}")
    rows: list[dict[str, Any]] = []
    for size in sizes:
        rng = np.random.default_rng([seed, size])
        pairs = [radiograph_like_pair(size, rng) for _ in range(n_images)]
        xs = torch.from_numpy(np.stack([p[0] for p in pairs]))
        ys = torch.from_numpy(np.stack([p[1] for p in pairs]))
        if "compiled" in backends:
            torch.compiler.reset()  # drop other sizes' kernels: stay under the recompile limit
        for mode, options in MODES.items():
            skimage_s, reference = _time_skimage(pairs, options, repeats)
            for backend in backends:
                ours_s, ours = _time_ours(xs, ys, options, backend == "compiled", repeats)
                rows.append(
                    {
                        "size": size,
                        "mode": mode,
                        "backend": backend,
                        "n_images": n_images,
                        "skimage_ms": 1e3 * skimage_s,
                        "ours_ms": 1e3 * ours_s,
                        "speedup": skimage_s / ours_s,
                        "max_abs_diff": float(np.max(np.abs(ours - reference))),
                        "mean_ssim": float(np.mean(reference)),
                    }
                )
    _print_table(rows, echo)
    failed = [r for r in rows if not r["max_abs_diff"] <= PARITY_TOLERANCE]
    if failed:
        raise HarmonizeError(
            f"SSIM parity lost: {len(failed)} row(s) differ from scikit-image by more than "
            f"{PARITY_TOLERANCE:g} (worst {max(r['max_abs_diff'] for r in failed):.2e})"
        )
    return rows


def _print_table(rows: list[dict[str, Any]], echo: Callable[[str], Any]) -> None:
    echo("\nbench ssim: scikit-image one image at a time vs ours on the batch, CPU, float32")
    echo(
        "| size | mode | backend | mean SSIM | skimage ms/img | ours ms/img | speed-up "
        "| max abs diff |"
    )
    echo("|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        echo(
            f"| {r['size']} | {r['mode']} | {r['backend']} | {r['mean_ssim']:.3f} "
            f"| {r['skimage_ms']:.1f} | {r['ours_ms']:.2f} | {r['speedup']:.1f}x "
            f"| {r['max_abs_diff']:.1e} |"
        )
    echo(f"target: speed-up >= {TARGET_SPEEDUP:g}x with max abs diff <= {PARITY_TOLERANCE:g}")
