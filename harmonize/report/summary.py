"""Per-configuration numbers of a report: counts, SSIM and histogram distances to the target.

Two histogram distances, both Wasserstein-1 in display-intensity units (0..1) between 64-bin
histograms and the target site's mean histogram, BEFORE (original images, ``hist_in``) and AFTER
(harmonized images, ``hist_out``):

- **mean-hist**: the distance of the harmonized set's mean histogram. It says whether the set as a
  whole now looks like the target, but spread errors cancel in the mean.
- **per-image**: the mean over images of each image's own distance. Every image must move, so it
  is the stricter number; it does not reach 0 even for target images, whose histograms vary
  around the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harmonize.metrics.histogram import wasserstein_1d
from harmonize.report.data import ConfigRows, TargetHistogram, stacked_histograms


@dataclass(frozen=True)
class Distances:
    """Wasserstein-1 distance to the target before and after harmonization."""

    before: float
    after: float

    @property
    def change_percent(self) -> float | None:
        """100 * (after - before) / before: negative when harmonization brought the images
        closer to the target; ``None`` when before is 0."""
        return 100.0 * (self.after - self.before) / self.before if self.before > 0 else None


@dataclass(frozen=True)
class MethodSummary:
    """What one harmonizer configuration did to the images it harmonized."""

    label: str  # method, plus mode and config when one method ran with several configs
    rows: ConfigRows
    n_ok: int
    n_error: int
    ssim: np.ndarray  # one SSIM per counted ok image (missing values dropped)
    mean_hist_in: np.ndarray | None  # mean over images with both histograms
    mean_hist_out: np.ndarray | None
    n_hist: int
    target: TargetHistogram
    mean_hist: Distances | None  # None without target histogram or image histograms
    per_image: Distances | None
    # Against the paired truth (rows whose labels table links one; finite values only).
    ssim_truth: np.ndarray = field(default_factory=lambda: np.zeros(0))
    psnr_truth: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def ssim_mean(self) -> float | None:
        return float(np.mean(self.ssim)) if self.ssim.size else None

    @property
    def ssim_std(self) -> float | None:
        """Population standard deviation (numpy's default, ddof=0)."""
        return float(np.std(self.ssim)) if self.ssim.size else None


def config_label(rows: ConfigRows, several_configs: bool) -> str:
    if not several_configs:
        return rows.method
    return f"{rows.method} ({rows.mode or '?'}, {(rows.config_hash or '?')[:8]})"


def _finite(ok: pd.DataFrame, column: str) -> np.ndarray:
    """The column's finite values (none when the rows lack the column)."""
    if column not in ok:
        return np.zeros(0)
    values = ok[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return values[np.isfinite(values)]


def summarize(rows: ConfigRows, label: str, target: TargetHistogram) -> MethodSummary:
    ok = rows.ok
    ssim = _finite(ok, "ssim")
    hist_in, hist_out = stacked_histograms(ok["hist_in"]), stacked_histograms(ok["hist_out"])
    paired = ~(np.isnan(hist_in).any(axis=1) | np.isnan(hist_out).any(axis=1))
    hist_in, hist_out = hist_in[paired], hist_out[paired]
    mean_in = hist_in.mean(axis=0) if len(hist_in) else None
    mean_out = hist_out.mean(axis=0) if len(hist_out) else None
    mean_hist = per_image = None
    if target.values is not None and mean_in is not None and mean_out is not None:
        t = target.values
        mean_hist = Distances(wasserstein_1d(mean_in, t), wasserstein_1d(mean_out, t))
        per_image = Distances(
            float(np.mean([wasserstein_1d(h, t) for h in hist_in])),
            float(np.mean([wasserstein_1d(h, t) for h in hist_out])),
        )
    return MethodSummary(
        label=label,
        rows=rows,
        n_ok=len(ok),
        n_error=len(rows.errors),
        ssim=ssim,
        mean_hist_in=mean_in,
        mean_hist_out=mean_out,
        n_hist=int(paired.sum()),
        target=target,
        mean_hist=mean_hist,
        per_image=per_image,
        ssim_truth=_finite(ok, "ssim_truth"),
        psnr_truth=_finite(ok, "psnr_truth"),
    )
