"""The eager SSIM strip engine: each strip's filters as operations on views prepared once.

Each filter is a list of operations on flat views of a strip's buffers. Flat shifts mean that a
window may wrap across a row (last k - 1 columns) or a map (last k - 1 rows): those positions are
outside the valid output and never read. Preparing the views once per strip shape leaves only
the arithmetic per strip, which keeps the fixed Python cost per strip small. Box windows run as
doubling sums, Gaussian ones as small banded matrix products; every intermediate lives in
preallocated per-thread buffers (a few MiB, kept for the next call).
"""

from __future__ import annotations

import functools
import math
import threading

import torch

from harmonize.metrics._ssim_plan import Strip, StripPlan, Window

# Smallest block width of the banded matrix products that filter rows with weighted taps.
_GEMM_BLOCK = 16

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
        self.programs: dict[tuple[int, int, Window], _StripProgram] = {}


class _StripProgram:
    """Every operand view of one strip shape (nb images, rows output rows) over a thread's buffers.

    ``run`` does one strip: the four maps x', y', 2*cov*x'y'/s + C2/s, (x - y)^2 (x' = x - centre,
    s the filter's weight sum, so the third filters straight to 2*cov*E[x'y'] + C2), filtered along
    rows then columns, then the SSIM formula in place; it returns the valid SSIM rows.
    """

    def __init__(self, buffers: _StripBuffers, nb: int, rows: int, width: int, window: Window):
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


_thread_state = threading.local()


def _thread_buffers(plan: StripPlan, width: int, k: int, device: torch.device) -> _StripBuffers:
    """This thread's buffers for the shape, kept (one shape per thread) for the next call."""
    key = (plan, width, k, device)
    cached = getattr(_thread_state, "buffers", None)
    if cached is None or cached[0] != key:
        cached = (key, _StripBuffers(plan.images, plan.rows, width, k, device))
        _thread_state.buffers = cached
    return cached[1]


class EagerStrips:
    """Computes one strip's SSIM sums (and map rows) with the eager engine; callable per strip."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        window: Window,
        plan: StripPlan,
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

    def __call__(self, strip: Strip) -> torch.Tensor:
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
