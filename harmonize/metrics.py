"""Image metrics: batched SSIM equal to scikit-image's, intensity histograms, 1-D Wasserstein;
and classifier metrics: ROC curve and AUC equal to scikit-learn's, DeLong confidence intervals.

``ssim`` computes the mean structural similarity of each image pair of a batch in torch, float32,
and matches ``skimage.metrics.structural_similarity`` to better than 1e-4 in both its default mode
(7x7 uniform window, sample covariance) and its Gaussian mode (``gaussian_weights=True``). It is
built for speed on CPU: the image is processed in row strips small enough to stay in cache, the
four filtered maps (x, y, xy, (x - y)^2) are stacked so that each filter pass runs once for all of
them, filters are separable and run as flat shifted sums (box) or small banded matrix products
(Gaussian), and every intermediate lives in preallocated per-thread buffers (a few MiB, kept for the
next call). ``compiled=True`` runs each strip through ``torch.compile`` instead (needs a C++
compiler; faster again, but compiles for every new strip shape).

Example::

    score = ssim(original, harmonized, data_range=1.0)          # (H, W) pair -> 0-d tensor
    scores = ssim(batch_a, batch_b, data_range=1.0)              # (N, H, W) -> (N,)
    hist = intensity_histogram(image)                             # HIST_BINS probabilities
    shift = wasserstein_1d(hist, intensity_histogram(reference))
    auc, low, high = auc_ci_delong(labels, scores)               # AUC with its 95% CI
    diff, low, high, p = auc_difference_delong(labels, harmonized_scores, original_scores)
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
import torch

from harmonize.errors import HarmonizeError

HIST_BINS = 64
"""Bins of every stored intensity histogram (manifest ``hist_in`` / ``hist_out``, model cards)."""

ImageBatch = torch.Tensor | np.ndarray
"""An image (H, W) or a batch of images (N, H, W), as a torch tensor or a numpy array."""

# A strip is _STRIP_ROWS output rows of as many images as keep its stack of four moment maps
# under _STRIP_FLOATS float32 values (2.5 MiB): small enough to stay in cache through the two dozen
# passes over it, large enough that the fixed cost of each torch operation stays small.
_STRIP_ROWS = 64
_STRIP_FLOATS = 640 * 1024
# Smallest block width of the banded matrix products that filter rows with weighted taps.
_GEMM_BLOCK = 16


# -- SSIM ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Window:
    """The SSIM window in skimage's terms, reduced to what the strip engine needs."""

    taps: tuple[float, ...]  # separable 1-D filter; the 2-D window is the outer product
    crop: int  # skimage's border crop minus the filter radius (0 unless win_size > filter)
    cov_norm: float  # NP / (NP - 1) for the sample covariance, 1 for the population one
    box: bool  # all taps are 1: a box sum, run as doubling sums instead of weighted adds

    @property
    def size(self) -> int:
        return len(self.taps)

    @property
    def scale(self) -> float:
        """The 2-D filter's weight sum: k*k for box sums, 1 for normalized Gaussian taps."""
        return math.fsum(self.taps) ** 2


def _window(
    gaussian_weights: bool, sigma: float, win_size: int | None, use_sample_covariance: bool
) -> _Window:
    """The window skimage's structural_similarity uses for these arguments."""
    if sigma <= 0:
        raise HarmonizeError(f"SSIM sigma must be positive, got {sigma}")
    if gaussian_weights:
        radius = int(3.5 * sigma + 0.5)  # scipy.ndimage.gaussian_filter with truncate=3.5
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        weights = np.exp(-0.5 * offsets**2 / sigma**2)
        taps = tuple(float(w) for w in weights / weights.sum())
        win_size = 2 * radius + 1 if win_size is None else win_size
    else:
        win_size = 7 if win_size is None else win_size
        taps = (1.0,) * win_size
        radius = (win_size - 1) // 2
    if win_size < 1 or win_size % 2 == 0:
        raise HarmonizeError(f"SSIM win_size must be a positive odd number, got {win_size}")
    crop = (win_size - 1) // 2
    if crop < radius:
        raise HarmonizeError(
            f"SSIM win_size={win_size} is smaller than the Gaussian filter "
            f"({2 * radius + 1} taps for sigma={sigma}); use win_size >= {2 * radius + 1} or "
            "leave it unset"
        )
    n_points = win_size**2
    cov_norm = n_points / (n_points - 1) if use_sample_covariance and n_points > 1 else 1.0
    return _Window(taps=taps, crop=crop - radius, cov_norm=cov_norm, box=not gaussian_weights)


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
    x: ImageBatch, y: ImageBatch, window: _Window
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


@dataclass(frozen=True)
class _StripPlan:
    """How the engine cuts a batch: images per chunk and filtered output rows per strip."""

    images: int
    rows: int

    @staticmethod
    def for_shape(n_images: int, height: int, width: int, k: int) -> _StripPlan:
        rows = min(max(_STRIP_ROWS, 4 * (k - 1)), height - k + 1)
        stack = 4 * (rows + k - 1) * width  # floats in one image's strip of four maps
        images = max(1, min(n_images, _STRIP_FLOATS // stack))
        return _StripPlan(images=images, rows=rows)


# -- SSIM, eager engine: operations on views prepared once per strip shape ------------------------
# Each filter is a list of operations on flat views of a strip's buffers. Flat shifts mean that a
# window may wrap across a row (last k - 1 columns) or a map (last k - 1 rows): those positions are
# outside the valid output and never read. Preparing the views once per strip shape leaves only
# the arithmetic per strip, which keeps the fixed Python cost per strip small.
_AddOp = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # out = a + b; a += b if out None


def _box_sum_ops(
    src: torch.Tensor, k: int, step: int, out: torch.Tensor, scratch: torch.Tensor
) -> list[_AddOp]:
    """out[i] = sum(src[i + t * step] for t < k) on flat views, by doubling partial sums.

    ``scratch`` rows hold the partial sums of 2, 4, ... samples; a window of k samples then costs
    about log2(k) + popcount(k) additions instead of k - 1.
    """
    ops: list[_AddOp] = []
    n = out.numel()
    sums = {1: src}
    width = 1
    while 2 * width <= k:
        prev = sums[width]
        length = prev.numel() - width * step
        level = scratch[len(sums) - 1, :length]
        ops.append((prev[:length], prev[width * step : width * step + length], level))
        width *= 2
        sums[width] = level
    terms = [(width, 0)]
    offset, remaining, part = width, k - width, width
    while remaining:
        while part > remaining:
            part //= 2
        terms.append((part, offset))
        offset, remaining = offset + part, remaining - part
    views = [sums[part][offset * step : offset * step + n] for part, offset in terms]
    if len(views) == 1:
        return [*ops, (views[0], torch.zeros((), device=src.device), out)]
    ops.append((views[0], views[1], out))
    return ops + [(out, view, None) for view in views[2:]]


def _run_adds(ops: list[_AddOp]) -> None:
    for a, b, out in ops:
        if out is None:
            a.add_(b)
        else:
            torch.add(a, b, out=out)


@functools.lru_cache(maxsize=16)
def _band_blocks(
    taps: tuple[float, ...], block: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T0, T1) with flat_out[j*B:(j+1)*B] = src_block[j] @ T0 + src_block[j + 1] @ T1."""
    t0 = torch.zeros(block, block, dtype=torch.float32)
    t1 = torch.zeros(block, block, dtype=torch.float32)
    for out_pos in range(block):
        for t, weight in enumerate(taps):
            src_pos = out_pos + t
            if src_pos < block:
                t0[src_pos, out_pos] = weight
            else:
                t1[src_pos - block, out_pos] = weight
    return t0.to(device), t1.to(device)


def _gemm_block(k: int) -> int:
    """Block width for a k-tap window: a multiple of 16 with k - 1 <= width (two blocks hold it)."""
    return max(_GEMM_BLOCK, -(-(k - 1) // _GEMM_BLOCK) * _GEMM_BLOCK)


class _StripBuffers:
    """One thread's zero-filled flat buffers for strips of up to (images, rows, width)."""

    def __init__(self, images: int, rows: int, width: int, k: int, device: torch.device):
        self.block = _gemm_block(k)  # columns of the row filter's blocks
        self.row_block = max(1, k - 1)  # rows of the column filter's blocks
        stack = images * 4 * (rows + k - 1) * width
        padded = (stack + 2 * self.block) // self.block * self.block  # what the GEMMs read
        padded_rows = padded + 2 * self.row_block * width

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, dtype=torch.float32, device=device)

        self.moments = zeros(padded)
        self.horizontal = zeros(padded_rows)
        self.vertical = zeros(padded_rows)
        self.scratch = zeros(max(1, int(math.log2(k))), padded)
        self.diff = zeros(images, rows, width)
        self.ssim = zeros(images, rows, width)
        self.programs: dict[tuple[int, int, _Window], _StripProgram] = {}


class _StripProgram:
    """Every operand view of one strip shape (nb images, rows output rows) over a thread's buffers.

    ``run`` does one strip: the four maps x', y', 2*cov*x'y'/s + C2/s, (x - y)^2 (x' = x - centre,
    s the filter's weight sum, so the third filters straight to 2*cov*E[x'y'] + C2), filtered along
    rows then columns, then the SSIM formula in place; it returns the valid SSIM rows.
    """

    def __init__(self, buffers: _StripBuffers, nb: int, rows: int, width: int, window: _Window):
        k = window.size
        self.scale, self.cov, self.box = window.scale, window.cov_norm, window.box
        span = rows + k - 1
        used = nb * 4 * span * width
        self.maps = buffers.moments[:used].view(nb, 4, span, width).unbind(1)
        if window.box:
            after_rows = used - (k - 1)
            horizontal = buffers.horizontal[:after_rows]
            vertical = buffers.vertical[: after_rows - (k - 1) * width]
            self.rows_ops = _box_sum_ops(buffers.moments[:used], k, 1, horizontal, buffers.scratch)
            self.cols_ops = _box_sum_ops(horizontal, k, width, vertical, buffers.scratch)
        else:
            # Row filter: the flat stack as (M, B) blocks, out_j = in_j @ T0 + in_{j+1} @ T1.
            block = buffers.block
            padded = (used + 2 * block) // block * block
            blocks = buffers.moments[:padded].view(-1, block)
            t0, t1 = _band_blocks(window.taps, block, blocks.device)
            result = buffers.horizontal[:padded].view(-1, block)[:-1]
            self.rows_gemm = (blocks[:-1], t0, result, blocks[1:], t1)
            # Column filter: blocks of B rows, out_j = T0' @ in_j + T1' @ in_{j+1}.
            block = buffers.row_block
            n_blocks = -(-used // (block * width)) + 1
            rows_in = buffers.horizontal[: n_blocks * block * width].view(n_blocks, block, width)
            rows_out = buffers.vertical[: (n_blocks - 1) * block * width]
            t0, t1 = _band_blocks(window.taps, block, blocks.device)
            self.cols_gemm = (
                t0.t().contiguous().expand(n_blocks - 1, block, block),
                rows_in[:-1],
                rows_out.view(n_blocks - 1, block, width),
                t1.t().contiguous().expand(n_blocks - 1, block, block),
                rows_in[1:],
            )
        filtered = buffers.vertical[:used].view(nb, 4, span, width)[:, :, :rows]
        self.means = filtered[:, :2]
        self.sx, self.sy, self.a2, self.b2 = filtered.unbind(1)
        self.diff, self.ssim = buffers.diff[:nb, :rows], buffers.ssim[:nb, :rows]
        self.valid = self.ssim[:, :, window.crop : width - k + 1 - window.crop]

    def run(
        self,
        xs: torch.Tensor,
        ys: torch.Tensor,
        centre: torch.Tensor,
        scaled_centre: torch.Tensor,
        c1_term: torch.Tensor,
        c2_term: torch.Tensor,
    ) -> torch.Tensor:
        scale, cov = self.scale, self.cov
        x_c, y_c, xy, dd = self.maps
        torch.sub(xs, centre, out=x_c)
        torch.sub(ys, centre, out=y_c)
        torch.addcmul(c2_term, x_c, y_c, value=2 * cov / scale, out=xy)
        torch.sub(xs, ys, out=dd)
        dd.square_()
        if self.box:
            _run_adds(self.rows_ops)
            _run_adds(self.cols_ops)
        else:
            blocks_a, t0, result, blocks_b, t1 = self.rows_gemm
            torch.mm(blocks_a, t0, out=result)
            result.addmm_(blocks_b, t1)
            t0, blocks_a, result, t1, blocks_b = self.cols_gemm
            torch.bmm(t0, blocks_a, out=result)
            result.baddbmm_(t1, blocks_b)
        # Filtered: s*E[x'], s*E[y'], 2*cov*E[x'y'] + C2, s*E[(x - y)^2]. With d = E[x] - E[y]:
        # A1 = 2 E[x] E[y] + C1, B1 = A1 + d^2, A2 = 2 cov_xy + C2, B2 = A2 + cov * var(x - y).
        sx, sy, a2, b2, diff, ssim = self.sx, self.sy, self.a2, self.b2, self.diff, self.ssim
        torch.sub(sx, sy, out=diff)  # s * d
        a2.addcmul_(sx, sy, value=-2 * cov / scale**2)  # A2
        b2.addcmul_(diff, diff, value=-1 / scale)  # s * var(x - y)
        torch.add(a2, b2, alpha=cov / scale, out=b2)  # B2
        self.means.add_(scaled_centre)  # s * E[x], s * E[y]
        torch.addcmul(c1_term, sx, sy, value=2 / scale**2, out=ssim)  # A1
        diff.square_()
        torch.add(ssim, diff, alpha=1 / scale**2, out=diff)  # B1
        ssim.mul_(a2)
        diff.mul_(b2)
        ssim.div_(diff)
        return self.valid


@dataclass(frozen=True)
class _Strip:
    """One unit of work: filtered output rows [r0, r0 + rows) of images [n0, n0 + nb).

    ``repeated_images`` / ``repeated_rows``: how many leading images / rows an earlier strip has
    already done, not to be counted again (non-zero only in uniform plans, see ``_strips``).
    """

    n0: int
    nb: int
    r0: int
    rows: int
    repeated_images: int = 0
    repeated_rows: int = 0


def _strips(
    n_images: int, out_h: int, crop: int, plan: _StripPlan, uniform: bool = False
) -> list[_Strip]:
    """The strips covering output rows [crop, out_h - crop) of every image.

    With ``uniform`` every strip has the same shape (the last strip and chunk start earlier and
    overlap the previous ones), so a shape-specialized compiled kernel serves them all.
    """
    images, rows = min(plan.images, n_images), min(plan.rows, out_h - 2 * crop)
    strips = []
    for n0 in range(0, n_images, images):
        for r0 in range(crop, out_h - crop, rows):
            nb, nr = min(images, n_images - n0), min(rows, out_h - crop - r0)
            if uniform:
                start_n, start_r = n0 + nb - images, r0 + nr - rows
                strips.append(_Strip(start_n, images, start_r, rows, images - nb, rows - nr))
            else:
                strips.append(_Strip(n0, nb, r0, nr))
    return strips


_thread_state = threading.local()


def _thread_buffers(plan: _StripPlan, width: int, k: int, device: torch.device) -> _StripBuffers:
    """This thread's buffers for the shape, kept (one shape per thread) for the next call."""
    key = (plan, width, k, device)
    cached = getattr(_thread_state, "buffers", None)
    if cached is None or cached[0] != key:
        cached = (key, _StripBuffers(plan.images, plan.rows, width, k, device))
        _thread_state.buffers = cached
    return cached[1]


class _EagerStrips:
    """Computes one strip's SSIM sums (and map rows) with the eager engine; callable per strip."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        window: _Window,
        plan: _StripPlan,
        c1: float,
        c2: float,
        out_map: torch.Tensor | None,
    ):
        self.x, self.y, self.window, self.plan, self.out_map = x, y, window, plan, out_map
        # Centre both images on one per-image constant: the local variances E[x^2] - E[x]^2
        # then cancel far less in float32, and a shared constant leaves x - y unchanged.
        self.centre = x.mean(dim=(1, 2), keepdim=True)
        self.scaled_centre = (self.centre * window.scale).unsqueeze(1)
        self.c2_term = torch.tensor(c2 / window.scale, dtype=torch.float32, device=x.device)
        self.c1_term = torch.tensor(c1, dtype=torch.float32, device=x.device)

    def __call__(self, strip: _Strip) -> torch.Tensor:
        width, k = self.x.shape[-1], self.window.size
        buffers = _thread_buffers(self.plan, width, k, self.x.device)
        key = (strip.nb, strip.rows, self.window)
        program = buffers.programs.get(key)
        if program is None:
            program = _StripProgram(buffers, strip.nb, strip.rows, width, self.window)
            buffers.programs[key] = program
        images, rows_in = (
            slice(strip.n0, strip.n0 + strip.nb),
            slice(strip.r0, strip.r0 + strip.rows + k - 1),
        )
        valid = program.run(
            self.x[images, rows_in],
            self.y[images, rows_in],
            self.centre[images],
            self.scaled_centre[images],
            self.c1_term,
            self.c2_term,
        )
        if self.out_map is not None:
            crop = self.window.crop
            self.out_map[images, strip.r0 - crop : strip.r0 - crop + strip.rows] = valid
        return valid.sum(dim=(1, 2)).double()  # float32 cascade sum of < 1M terms: ~1e-7


def _strip_ssim_reference(
    xs: torch.Tensor,
    ys: torch.Tensor,
    centre: torch.Tensor,
    constants: torch.Tensor,
    taps: tuple[float, ...],
    crop: int,
    stack_rows: bool,
) -> torch.Tensor:
    """The SSIM map of one strip as plain tensor algebra, for torch.compile to fuse.

    ``constants`` is the 1-D tensor (C1, C2, cov_norm): a tensor, so that a new data range does not
    trigger a recompilation.
    """
    k = len(taps)
    c1, c2, cov = constants[0], constants[1], constants[2]

    def along_rows(t: torch.Tensor) -> torch.Tensor:
        n = t.shape[-1] - k + 1
        acc = t[..., 0:n] * taps[0]
        for i in range(1, k):
            acc = acc + t[..., i : i + n] * taps[i]
        return acc

    def along_cols(t: torch.Tensor) -> torch.Tensor:
        n = t.shape[-2] - k + 1
        acc = t[..., 0:n, :] * taps[0]
        for i in range(1, k):
            acc = acc + t[..., i : i + n, :] * taps[i]
        return acc

    xc, yc = xs - centre, ys - centre
    maps = (xc, yc, xc * yc, (xc - yc) ** 2)
    if stack_rows:
        # One stacked buffer of row-filtered maps: otherwise the compiler recomputes a short
        # (7-tap) row filter inside the column filter. Long filters it keeps in memory anyway,
        # and there the stacking copy costs more than it saves (measured).
        filtered = along_cols(torch.stack([along_rows(m) for m in maps], dim=1)).unbind(1)
    else:
        filtered = tuple(along_cols(along_rows(m)) for m in maps)
    mx, my, mxy, mdd = filtered
    diff = mx - my
    a2 = 2 * cov * (mxy - mx * my) + c2
    b2 = cov * (mdd - diff * diff) + a2
    a1 = 2 * (mx + centre) * (my + centre) + c1
    b1 = a1 + diff * diff
    ssim = (a1 * a2) / (b1 * b2)
    return ssim[..., crop : ssim.shape[-1] - crop]


@functools.cache
def _compiled_strip() -> Callable[..., torch.Tensor]:
    # Static shapes: kernels specialized to the strip shape run faster than dynamic ones, and
    # uniform strips give one shape per image size, batch size and window.
    return torch.compile(_strip_ssim_reference, dynamic=False)


class _CompiledStrips:
    """Computes one strip's SSIM sums (and map rows) through torch.compile; callable per strip."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        window: _Window,
        c1: float,
        c2: float,
        out_map: torch.Tensor | None,
    ):
        self.x, self.y, self.window, self.out_map = x, y, window, out_map
        k = window.size
        self.taps = (1.0 / k,) * k if window.box else window.taps
        self.centre = x.mean(dim=(1, 2), keepdim=True)
        self.constants = torch.tensor(
            [c1, c2, window.cov_norm], dtype=torch.float32, device=x.device
        )

    def __call__(self, strip: _Strip) -> torch.Tensor:
        images = slice(strip.n0, strip.n0 + strip.nb)
        rows_in = slice(strip.r0, strip.r0 + strip.rows + self.window.size - 1)
        ssim = _compiled_strip()(
            self.x[images, rows_in],
            self.y[images, rows_in],
            self.centre[images],
            self.constants,
            self.taps,
            self.window.crop,
            self.window.box,
        )[strip.repeated_images :, strip.repeated_rows :]
        if self.out_map is not None:
            first_row = strip.r0 + strip.repeated_rows - self.window.crop
            new = slice(strip.n0 + strip.repeated_images, strip.n0 + strip.nb)
            self.out_map[new, first_row : first_row + ssim.shape[1]] = ssim
        return ssim.sum(dim=(1, 2)).double()


def _run_ssim(
    x: ImageBatch,
    y: ImageBatch,
    window: _Window,
    data_range: float,
    k1: float,
    k2: float,
    compiled: bool,
    want_map: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Validate, run one engine; return (per-image means, optional map, single-image input)."""
    if not data_range > 0:
        raise HarmonizeError(f"SSIM data_range must be positive, got {data_range}")
    if k1 < 0 or k2 < 0:
        raise HarmonizeError(f"SSIM K1 and K2 must be non-negative, got {k1} and {k2}")
    xt, yt, single = _check_pair(x, y, window)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    n_images, height, width = xt.shape
    margin = window.size - 1 + 2 * window.crop
    with torch.inference_mode():
        out_map = None
        if want_map:
            out_map = torch.empty(n_images, height - margin, width - margin, device=xt.device)
        plan = _StripPlan.for_shape(n_images, height, width, window.size)
        task: Callable[[_Strip], torch.Tensor]
        if compiled:
            task = _CompiledStrips(xt, yt, window, c1, c2, out_map)
        else:
            task = _EagerStrips(xt, yt, window, plan, c1, c2, out_map)
        sums = torch.zeros(n_images, dtype=torch.float64, device=xt.device)
        out_h = height - window.size + 1
        # Strips run one after the other; each operation in a strip uses torch's intra-op threads.
        for strip in _strips(n_images, out_h, window.crop, plan, uniform=compiled):
            sums[strip.n0 + strip.repeated_images : strip.n0 + strip.nb] += task(strip)
        means = sums / float((height - margin) * (width - margin))
    return means, out_map, single


def ssim(
    x: ImageBatch,
    y: ImageBatch,
    *,
    data_range: float,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    win_size: int | None = None,
    use_sample_covariance: bool = True,
    K1: float = 0.01,
    K2: float = 0.03,
    compiled: bool = False,
) -> torch.Tensor:
    """Mean SSIM of each image pair, equal to ``skimage.metrics.structural_similarity``.

    Args:
        x, y: images of the same shape, (H, W) or (N, H, W), torch tensors or numpy arrays of any
            real dtype (computed in float32 on x's device).
        data_range: the value range of the data (1.0 for [0, 1] floats, 65535 for uint16).
        gaussian_weights, sigma, win_size, use_sample_covariance, K1, K2: as in skimage; its
            Gaussian mode is ``gaussian_weights=True, use_sample_covariance=False`` (an 11-tap
            window for sigma=1.5). The map is cropped by (win_size - 1) // 2 before averaging.
        compiled: run the strips through ``torch.compile`` (needs a C++ compiler): faster, but
            every new image width, batch size or window compiles for several seconds first, and
            past torch's recompile limit (8 shapes) torch falls back to slow uncompiled code. For
            benchmarks and fixed-size pipelines; archives of mixed sizes want the default.

    Returns:
        float64 tensor (on x's device) of shape (N,) for a batch, 0-d for a single pair.

    Raises:
        HarmonizeError: mismatched shapes, images smaller than the window, bad parameters.

    Example::

        >>> ssim(np.ones((16, 16)), np.ones((16, 16)), data_range=1.0).item()
        1.0
    """
    window = _window(gaussian_weights, sigma, win_size, use_sample_covariance)
    means, _, single = _run_ssim(x, y, window, data_range, K1, K2, compiled, want_map=False)
    return means[0] if single else means


def ssim_map(
    x: ImageBatch,
    y: ImageBatch,
    *,
    data_range: float,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    win_size: int | None = None,
    use_sample_covariance: bool = True,
    K1: float = 0.01,
    K2: float = 0.03,
    compiled: bool = False,
) -> torch.Tensor:
    """The cropped per-pixel SSIM map whose mean ``ssim`` returns, float32.

    Arguments as for ``ssim``. Shape (H - 2p, W - 2p) for one pair, (N, H - 2p, W - 2p) for a
    batch, p = (win_size - 1) // 2: skimage's ``full=True`` map with its border crop applied.
    """
    window = _window(gaussian_weights, sigma, win_size, use_sample_covariance)
    _, out_map, single = _run_ssim(x, y, window, data_range, K1, K2, compiled, want_map=True)
    assert out_map is not None
    return out_map[0] if single else out_map


# -- intensity histograms --------------------------------------------------------------------------
def intensity_histogram(
    image: np.ndarray | torch.Tensor,
    bins: int = HIST_BINS,
    value_range: tuple[float, float] = (0.0, 1.0),
    mask: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Probabilities of ``bins`` equal-width intensity bins over ``value_range``, float64.

    Values below or above the range count in the first or last bin; NaNs are ignored. With
    ``mask`` (same shape, truthy = counted) only masked pixels count. The result sums to 1.

    Raises:
        HarmonizeError: bad bins or range, a mask of another shape, or no pixel to count.
    """
    lo, hi = float(value_range[0]), float(value_range[1])
    if bins < 1:
        raise HarmonizeError(f"histogram bins must be at least 1, got {bins}")
    if not hi > lo:
        raise HarmonizeError(
            f"histogram value_range must be (low, high) with low < high, got {value_range}"
        )
    values = _to_numpy(image)
    # float32 holds every value of 8/16-bit data exactly and halves the memory traffic
    values = values.astype(np.float32 if values.dtype.itemsize <= 2 else np.float64, copy=False)
    if mask is not None:
        mask_array = _to_numpy(mask)
        if mask_array.shape != values.shape:
            raise HarmonizeError(
                f"histogram mask shape {mask_array.shape} differs from image shape {values.shape}"
            )
        values = values[mask_array.astype(bool)]
    values = values.ravel()
    if np.isnan(values).any():  # NaNs are not intensities: they are not counted
        values = values[~np.isnan(values)]
    # np.histogram's own index formula, (v - lo) * bins / (hi - lo) truncated, then one bincount
    # (several times faster than np.histogram; bin edges of the default range are exact).
    scaled = (values - values.dtype.type(lo)) * values.dtype.type(bins / (hi - lo))
    np.clip(scaled, 0, bins - 1, out=scaled)  # out-of-range values count in the end bins
    counts = np.bincount(scaled.astype(np.int32), minlength=bins)
    total = counts.sum()
    if total == 0:
        raise HarmonizeError("histogram of an empty image (or an all-false mask / all-NaN image)")
    return counts / total


def _to_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def wasserstein_1d(
    p: np.ndarray, q: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)
) -> float:
    """Wasserstein-1 (earth mover's) distance between two histograms on the same fixed bins.

    ``p`` and ``q`` are non-negative weights of equal-width bins over ``value_range`` (normalized
    here, so counts work too); the distance is sum(|CDF_p - CDF_q|) * bin width, in intensity
    units, equal to ``scipy.stats.wasserstein_distance`` on the bin centres with these weights.

    Raises:
        HarmonizeError: histograms of different lengths, negative or all-zero weights, bad range.
    """
    a = np.asarray(p, dtype=np.float64).ravel()
    b = np.asarray(q, dtype=np.float64).ravel()
    if a.size != b.size or a.size == 0:
        raise HarmonizeError(
            f"Wasserstein needs two histograms with the same bins, got {a.size} and {b.size} bins"
        )
    if (a < 0).any() or (b < 0).any() or not a.sum() > 0 or not b.sum() > 0:
        raise HarmonizeError("Wasserstein needs non-negative histogram weights with a positive sum")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise HarmonizeError(f"Wasserstein value_range must have low < high, got {value_range}")
    cdf_gap = np.cumsum(a / a.sum() - b / b.sum())
    return float(np.abs(cdf_gap[:-1]).sum() * (hi - lo) / a.size)


# -- ROC / AUC -------------------------------------------------------------------------------------
class MetricInputError(HarmonizeError, ValueError):
    """Labels or scores a ROC metric cannot use (a ValueError, and a HarmonizeError for the CLI)."""


class AucInterval(NamedTuple):
    """An AUC and the bounds of its confidence interval (clipped to [0, 1])."""

    auc: float
    low: float
    high: float


class AucDifference(NamedTuple):
    """AUC(a) - AUC(b) on the same samples, its confidence interval (clipped to [-1, 1]) and the
    two-sided p-value of "no difference"."""

    diff: float
    low: float
    high: float
    p_value: float


def _as_float_vector(values: Any, what: str) -> np.ndarray:
    """A 1-D float64 array; missing values (None, pd.NA) become NaN."""
    to_numpy = getattr(values, "to_numpy", None)  # pandas Series / nullable arrays: NA -> NaN
    if callable(to_numpy):
        try:
            values = to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            values = to_numpy()
    try:
        array = np.asarray(_to_numpy(values) if isinstance(values, torch.Tensor) else values)
        array = array.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise MetricInputError(f"{what} must be numbers, got {err}") from err
    if array.ndim != 1:
        raise MetricInputError(f"{what} must be one-dimensional, got shape {array.shape}")
    return array


def _binary_inputs(labels: Any, *scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated labels (int8 0/1, both classes present) and a (k, n) float64 array of scores."""
    y = _as_float_vector(labels, "labels")
    if y.size == 0:
        raise MetricInputError("ROC metrics need at least one sample, got none")
    if np.isnan(y).any():
        raise MetricInputError(
            f"labels contain {int(np.isnan(y).sum())} missing value(s); drop those samples first"
        )
    if not np.isin(y, (0.0, 1.0)).all():
        odd = np.unique(y[~np.isin(y, (0.0, 1.0))])[:5]
        raise MetricInputError(f"labels must be 0/1 (or bool), got {odd.tolist()}")
    rows = []
    for i, values in enumerate(scores):
        name = "scores" if len(scores) == 1 else f"scores #{i + 1}"
        s = _as_float_vector(values, name)
        if s.size != y.size:
            raise MetricInputError(
                f"labels and {name} differ in length: {y.size} labels, {s.size} scores"
            )
        if not np.isfinite(s).all():
            raise MetricInputError(
                f"{name} contain {int((~np.isfinite(s)).sum())} NaN or infinite value(s); "
                "drop those samples first"
            )
        rows.append(s)
    n_pos = int(y.sum())
    if n_pos in (0, y.size):
        raise MetricInputError(
            f"ROC AUC needs both classes, but all {y.size} labels are {int(y[0])}"
        )
    return y.astype(np.int8), np.stack(rows)


def roc_curve(
    labels: Any, scores: Any, *, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sklearn.metrics.roc_curve`` for binary labels (1 = positive): (fpr, tpr, thresholds).

    Raises:
        MetricInputError (a ValueError): labels not 0/1, one class only, NaN labels or scores,
            lengths that differ.
    """
    from sklearn.metrics import roc_curve as sk_roc_curve

    y, s = _binary_inputs(labels, scores)
    fpr, tpr, thresholds = sk_roc_curve(y, s[0], drop_intermediate=drop_intermediate)
    return fpr, tpr, thresholds


def roc_auc(labels: Any, scores: Any) -> float:
    """``sklearn.metrics.roc_auc_score`` for binary labels (1 = positive); ties count one half.

    Raises:
        MetricInputError (a ValueError): as `roc_curve`.
    """
    from sklearn.metrics import roc_auc_score

    y, s = _binary_inputs(labels, scores)
    return float(roc_auc_score(y, s[0]))


def _delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance (k, k) for a (k, n) score array, by the midrank
    algorithm of Sun & Xu (IEEE Signal Process. Lett. 21(11), 2014): O(k n log n)."""
    from scipy.stats import rankdata

    positive = y == 1
    pos, neg = scores[:, positive], scores[:, ~positive]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise MetricInputError(
            f"a DeLong confidence interval needs at least 2 positives and 2 negatives, got "
            f"{m} and {n}"
        )
    tx = rankdata(pos, axis=1)  # midranks within the positives
    ty = rankdata(neg, axis=1)  # within the negatives
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # within all samples
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: share of negatives scored below it (ties 1/2)
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: share of positives scored above it
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def _z_for(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise MetricInputError(f"confidence level must be between 0 and 1, got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def auc_ci_delong(labels: Any, scores: Any, level: float = 0.95) -> AucInterval:
    """ROC AUC with DeLong's confidence interval (DeLong, DeLong & Clarke-Pearson, Biometrics
    1988): AUC ± z * sqrt(Var), the variance from the midrank placement values, clipped to [0, 1].

    The AUC equals `roc_auc` (and scikit-learn's). Perfectly separated classes have variance 0:
    the interval is then the point.

    Raises:
        MetricInputError (a ValueError): as `roc_curve`; fewer than 2 positives or negatives; a
            level outside (0, 1).
    """
    z = _z_for(level)
    y, s = _binary_inputs(labels, scores)
    aucs, cov = _delong(y, s)
    auc, half = float(aucs[0]), z * math.sqrt(max(float(cov[0, 0]), 0.0))
    return AucInterval(auc, max(0.0, auc - half), min(1.0, auc + half))


def auc_difference_delong(
    labels: Any, scores_a: Any, scores_b: Any, level: float = 0.95
) -> AucDifference:
    """DeLong's test for two correlated AUCs: two score vectors for the same samples (element i
    of each belongs to sample i; align them by sample id before calling).

    Returns AUC(a) - AUC(b), its confidence interval (clipped to [-1, 1]) and the two-sided
    p-value of z = diff / SE. Vectors that rank the samples identically give (0, 0, 0, 1).

    Raises:
        MetricInputError (a ValueError): as `auc_ci_delong`, for either score vector.
    """
    z = _z_for(level)
    y, s = _binary_inputs(labels, scores_a, scores_b)
    aucs, cov = _delong(y, s)
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(var) if var > 0.0 else 0.0
    if se == 0.0:
        p_value = 1.0 if diff == 0.0 else 0.0
    else:
        p_value = math.erfc(abs(diff) / se / math.sqrt(2.0))
    half = z * se
    return AucDifference(diff, max(-1.0, diff - half), min(1.0, diff + half), p_value)
