"""The compiled SSIM strip engine: each strip's SSIM map as plain tensor algebra, torch.compile'd.

Faster again than the eager engine, but it needs a C++ compiler and compiles for every new strip
shape; uniform strips (see `harmonize.metrics._ssim_plan.strips`) give one shape per image size,
batch size and window.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from harmonize.metrics._ssim_plan import Strip, Window


def strip_ssim_reference(
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
    return torch.compile(strip_ssim_reference, dynamic=False)


class CompiledStrips:
    """Computes one strip's SSIM sums (and map rows) through torch.compile; callable per strip."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        window: Window,
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

    def __call__(self, strip: Strip) -> torch.Tensor:
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
