"""SSIM: the mean structural similarity of each image pair of a batch, equal to scikit-image's.

``ssim`` computes it in torch, float32, and matches ``skimage.metrics.structural_similarity`` to
better than 1e-4 in both its default mode (7x7 uniform window, sample covariance) and its Gaussian
mode (``gaussian_weights=True``); ``ssim_map`` gives the per-pixel map it averages. It is built for
speed on CPU: the image is processed in row strips small enough to stay in cache, the four filtered
maps (x, y, xy, (x - y)^2) are stacked so that each filter pass runs once for all of them, filters
are separable and run as flat shifted sums (box) or small banded matrix products (Gaussian), and
every intermediate lives in preallocated per-thread buffers (a few MiB, kept for the next call).
``compiled=True`` runs each strip through ``torch.compile`` instead (needs a C++ compiler; faster
again, but compiles for every new strip shape). ``SSIM_OPTIONS`` are the options of the SSIM that
a run records in its manifest.

Example::

    score = ssim(original, harmonized, data_range=1.0)          # (H, W) pair -> 0-d tensor
    scores = ssim(batch_a, batch_b, data_range=1.0)              # (N, H, W) -> (N,)
    manifest_score = ssim(original, harmonized, **SSIM_OPTIONS)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Required, TypedDict, Unpack

import numpy as np
import torch

from harmonize.errors import HarmonizeError
from harmonize.metrics._ssim_compiled import CompiledStrips
from harmonize.metrics._ssim_eager import EagerStrips
from harmonize.metrics._ssim_plan import Strip, StripPlan, Window, skimage_window, strips

ImageBatch = torch.Tensor | np.ndarray
"""An image (H, W) or a batch of images (N, H, W), as a torch tensor or a numpy array."""


class SsimOptions(TypedDict, total=False):
    """The keyword arguments of `ssim` and `ssim_map` (their meaning and defaults: `ssim`)."""

    data_range: Required[float]
    gaussian_weights: bool
    sigma: float
    win_size: int | None
    use_sample_covariance: bool
    K1: float
    K2: float
    compiled: bool


SSIM_OPTIONS: SsimOptions = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 1.0,
}
"""SSIM in the manifest (and in training's validation): Wang et al. (2004) Gaussian-window SSIM on
display intensities in [0, 1], equal to skimage's structural_similarity(..., gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1)."""


def ssim(x: ImageBatch, y: ImageBatch, **options: Unpack[SsimOptions]) -> torch.Tensor:
    """Mean SSIM of each image pair, equal to ``skimage.metrics.structural_similarity``.

    Args:
        x, y: images of the same shape, (H, W) or (N, H, W), torch tensors or numpy arrays of any
            real dtype (computed in float32 on x's device).
        data_range: (keyword, required) the value range of the data (1.0 for [0, 1] floats, 65535
            for uint16).
        gaussian_weights=False, sigma=1.5, win_size=None, use_sample_covariance=True, K1=0.01,
            K2=0.03: keywords as in skimage; its Gaussian mode is ``gaussian_weights=True,
            use_sample_covariance=False`` (an 11-tap window for sigma=1.5). The map is cropped by
            (win_size - 1) // 2 before averaging.
        compiled=False: run the strips through ``torch.compile`` (needs a C++ compiler): faster,
            but every new image width, batch size or window compiles for several seconds first,
            and past torch's recompile limit (8 shapes) torch falls back to slow uncompiled code.
            For benchmarks and fixed-size pipelines; archives of mixed sizes want the default.

    Returns:
        float64 tensor (on x's device) of shape (N,) for a batch, 0-d for a single pair.

    Raises:
        HarmonizeError: mismatched shapes, images smaller than the window, bad parameters.

    Example::

        >>> ssim(np.ones((16, 16)), np.ones((16, 16)), data_range=1.0).item()
        1.0
    """
    means, _, single = _run_ssim(x, y, want_map=False, **options)
    return means[0] if single else means


def ssim_map(x: ImageBatch, y: ImageBatch, **options: Unpack[SsimOptions]) -> torch.Tensor:
    """The cropped per-pixel SSIM map whose mean ``ssim`` returns, float32.

    Arguments as for ``ssim``. Shape (H - 2p, W - 2p) for one pair, (N, H - 2p, W - 2p) for a
    batch, p = (win_size - 1) // 2: skimage's ``full=True`` map with its border crop applied.
    """
    _, out_map, single = _run_ssim(x, y, want_map=True, **options)
    assert out_map is not None
    return out_map[0] if single else out_map


def smallest_side(**options: Unpack[SsimOptions]) -> int:
    """The smallest image side SSIM with ``options`` can measure (its window must fit)."""
    window = skimage_window(
        options.get("gaussian_weights", False),
        options.get("sigma", 1.5),
        options.get("win_size"),
        options.get("use_sample_covariance", True),
    )
    return window.size + 2 * window.crop


def _run_ssim(
    x: ImageBatch,
    y: ImageBatch,
    want_map: bool,
    *,
    data_range: float,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    win_size: int | None = None,
    use_sample_covariance: bool = True,
    K1: float = 0.01,
    K2: float = 0.03,
    compiled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """What `ssim` and `ssim_map` share (the options' defaults too): validate, run one engine;
    return (per-image means, the map if ``want_map``, whether the input was one image pair)."""
    window = skimage_window(gaussian_weights, sigma, win_size, use_sample_covariance)
    if not data_range > 0:
        raise HarmonizeError(f"SSIM data_range must be positive, got {data_range}")
    if K1 < 0 or K2 < 0:
        raise HarmonizeError(f"SSIM K1 and K2 must be non-negative, got {K1} and {K2}")
    xt, yt, single = _check_pair(x, y, window)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    n_images, height, width = xt.shape
    margin = window.size - 1 + 2 * window.crop
    with torch.inference_mode():
        out_map = None
        if want_map:
            out_map = torch.empty(n_images, height - margin, width - margin, device=xt.device)
        plan = StripPlan.for_shape(n_images, height, width, window.size)
        task: Callable[[Strip], torch.Tensor]
        if compiled:
            task = CompiledStrips(xt, yt, window, c1, c2, out_map)
        else:
            task = EagerStrips(xt, yt, window, plan, c1, c2, out_map)
        sums = torch.zeros(n_images, dtype=torch.float64, device=xt.device)
        out_h = height - window.size + 1
        # Strips run one after the other; each operation in a strip uses torch's intra-op threads.
        for strip in strips(n_images, out_h, window.crop, plan, uniform=compiled):
            sums[strip.n0 + strip.repeated_images : strip.n0 + strip.nb] += task(strip)
        means = sums / float((height - margin) * (width - margin))
    return means, out_map, single


def _as_float_batch(image: ImageBatch, name: str) -> torch.Tensor:
    """(H, W) or (N, H, W) tensor or array -> contiguous float32 (N, H, W) tensor."""
    if isinstance(image, np.ndarray):
        array = np.ascontiguousarray(image, dtype=np.float32)
        with warnings.catch_warnings():  # read-only input is fine: SSIM never writes to it
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tensor = torch.from_numpy(array)
    else:
        tensor = image.detach().to(torch.float32).contiguous()
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3:
        raise HarmonizeError(
            f"SSIM {name} must have shape (H, W) or (N, H, W), got {tuple(image.shape)}"
        )
    return tensor


def _check_pair(
    x: ImageBatch, y: ImageBatch, window: Window
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validated float32 (N, H, W) tensors for x and y, and whether the input was one image."""
    for name, image in (("x", x), ("y", y)):
        if not isinstance(image, torch.Tensor | np.ndarray):
            raise HarmonizeError(
                f"SSIM {name} must be a torch tensor or a numpy array, got {type(image).__name__}"
            )
    if tuple(x.shape) != tuple(y.shape):
        raise HarmonizeError(
            f"SSIM needs images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    single = len(x.shape) == 2
    xt, yt = _as_float_batch(x, "x"), _as_float_batch(y, "y")
    if xt.device != yt.device:
        raise HarmonizeError(f"SSIM inputs are on different devices: {xt.device} and {yt.device}")
    height, width = xt.shape[-2:]
    needed = window.size + 2 * window.crop
    if min(height, width) < needed:
        raise HarmonizeError(
            f"SSIM window of {needed} pixels does not fit images of {height}x{width}; "
            f"use images of at least {needed}x{needed} or a smaller win_size"
        )
    if xt.shape[0] == 0:
        raise HarmonizeError("SSIM got an empty batch (N = 0)")
    return xt, yt, single
