"""The report's PNG figures (matplotlib, Agg backend): histograms, SSIM distributions, ROC curves
and a before/after montage. Each function returns PNG bytes, or ``None`` when there is nothing to
draw."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harmonize.metrics.histogram import HIST_BINS, wasserstein_1d
from harmonize.report.auc import ClassifierTable  # noqa: E402
from harmonize.report.summary import MethodSummary  # noqa: E402

DPI = 110
MONTAGE_SIDE = 192  # longest side of a montage tile, in pixels (block-mean downsampling)
COLORS = [f"C{i}" for i in range(10)]  # the default colour cycle
SAME_TARGET_W1 = 0.01  # target histograms closer than this (W1) are drawn as one


def _png(fig: Figure) -> bytes:
    sink = io.BytesIO()
    fig.savefig(sink, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return sink.getvalue()


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _targets(drawn: Sequence[MethodSummary]) -> list[np.ndarray]:
    """The distinct target histograms of the configurations, normalized, in order: two model
    cards' estimates of the same site (W1 below ``SAME_TARGET_W1``) count once."""
    out: list[np.ndarray] = []
    for s in drawn:
        if s.target.values is not None:
            target = s.target.values / s.target.values.sum()
            if not any(wasserstein_1d(target, t) < SAME_TARGET_W1 for t in out):
                out.append(target)
    return out


def _wrapped(label: str, width: int = 14) -> str:
    """A configuration label broken at spaces into lines of about ``width`` characters."""
    return "\n".join(textwrap.wrap(label, width, break_long_words=False)) or label


def _overlay_panel(ax: Axes, drawn: Sequence[tuple[int, MethodSummary]], edges: np.ndarray) -> None:
    """Source, target(s) and every configuration's harmonized histogram on one axis."""
    weights = np.array([s.n_hist for _, s in drawn], dtype=np.float64)
    stacked = np.array([s.mean_hist_in for _, s in drawn], dtype=np.float64)
    source = (weights[:, None] * stacked).sum(axis=0) / weights.sum()
    ax.stairs(source, edges, fill=True, color="0.8", label="source (original)")
    for k, target in enumerate(_targets([s for _, s in drawn])):
        name = "target" if k == 0 else f"target ({k + 1})"
        ax.stairs(target, edges, color="black", linewidth=1.6, linestyle=("-", "--", ":")[k % 3],
                  label=name)  # fmt: skip
    for index, s in drawn:
        assert s.mean_hist_out is not None
        ax.stairs(s.mean_hist_out, edges, color=COLORS[index % len(COLORS)], linewidth=1.4,
                  label=s.label)  # fmt: skip
    ax.set_title("all methods", fontsize=10)


def histogram_figure(summaries: Sequence[MethodSummary]) -> bytes | None:
    """Source (mean hist_in), target and harmonized (mean hist_out) histograms: with several
    configurations a first panel overlays them all, then one panel per configuration."""
    drawn = [(i, s) for i, s in enumerate(summaries) if s.mean_hist_in is not None]
    if not drawn:
        return None
    overlay = len(drawn) > 1
    n_rows, n_cols = _grid(len(drawn) + overlay)
    fig, axes = plt.subplots(  # constrained: no label runs into the panel below
        n_rows,
        n_cols,
        figsize=(4.6 * n_cols, 3.4 * n_rows),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    panels = list(axes.flat)
    if overlay:
        _overlay_panel(panels.pop(0), drawn, edges)
    for ax, (i, s) in zip(panels, drawn, strict=False):
        assert s.mean_hist_in is not None and s.mean_hist_out is not None
        ax.stairs(s.mean_hist_in, edges, fill=True, color="0.8", label="source (original)")
        if s.target.values is not None:
            target = s.target.values / s.target.values.sum()
            ax.stairs(target, edges, color="black", linewidth=1.6, label="target")
        ax.stairs(
            s.mean_hist_out, edges, color=COLORS[i % len(COLORS)], linewidth=1.6, label="harmonized"
        )
        ax.set_title(f"{s.label} (n={s.n_hist})", fontsize=10)
    for ax in axes.flat[: len(drawn) + overlay]:
        ax.set_xlabel("display intensity")
        ax.set_ylabel("probability")
        ax.legend(fontsize=8, frameon=False)
    for ax in axes.flat[len(drawn) + overlay :]:
        ax.set_visible(False)
    fig.suptitle("Mean intensity histograms (64 bins)", fontsize=11)
    return _png(fig)


def roc_figure(table: ClassifierTable | None) -> bytes | None:
    """ROC curves of Table 2 on one axis: original (source), in-domain (target) and each
    configuration, with the AUC in the legend."""
    drawn = [r for r in (table.rows if table else ()) if r.roc is not None and r.auc is not None]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.plot([0, 1], [0, 1], color="0.75", linewidth=0.8, linestyle=":", label="chance")
    styles = {
        "source": ("0.45", "--", 1.8),
        "target": ("black", "-", 1.8),
        "target-harmonized": ("black", ":", 1.4),
    }
    for row in drawn:
        assert row.roc is not None and row.auc is not None
        fpr, tpr = row.roc
        color, linestyle, width = styles.get(row.kind, (COLORS[row.color % len(COLORS)], "-", 1.5))
        label = f"{row.condition}: AUC {row.auc:.3f} (n={len(row.data)})"
        ax.plot(fpr, tpr, color=color, linestyle=linestyle, linewidth=width, label=label)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC of the target-site classifier", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return _png(fig)


def ssim_figure(summaries: Sequence[MethodSummary]) -> bytes | None:
    """Box plot of per-image SSIM(original, harmonized) per configuration, points overlaid."""
    drawn = [s for s in summaries if s.ssim.size]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(max(4.0, 1.9 * len(drawn) + 1.5), 3.8), layout="constrained")
    ax.boxplot([s.ssim for s in drawn], showmeans=True, showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)  # fixed jitter: the same manifest gives the same picture
    for i, s in enumerate(drawn, start=1):
        x = i + rng.uniform(-0.12, 0.12, s.ssim.size)
        ax.scatter(x, s.ssim, s=8, alpha=0.5, color=COLORS[(i - 1) % len(COLORS)], zorder=3)
    ticks = [f"{_wrapped(s.label)}\n(n={s.ssim.size})" for s in drawn]
    ax.set_xticks(range(1, len(drawn) + 1), ticks, fontsize=8)
    ax.set_ylabel("SSIM(original, harmonized)")
    ax.set_title("SSIM per image", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def downsample(image: np.ndarray, max_side: int = MONTAGE_SIDE) -> np.ndarray:
    """Block-mean downsampling by an integer factor so the longest side is at most ``max_side``."""
    factor = math.ceil(max(image.shape) / max_side)
    if factor <= 1:
        return image
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor)
    return np.asarray(blocks.mean(axis=(1, 3)))


def montage_figure(
    pairs: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, np.ndarray]]]],
) -> bytes | None:
    """One row per configuration: (original | harmonized) pairs side by side.

    Args:
        pairs: (configuration label, [(image id, original, harmonized), ...]) per row; display
            images in [0, 1], already downsampled.
    """
    pairs = [(label, images) for label, images in pairs if images]
    if not pairs:
        return None
    n_cols = 2 * max(len(images) for _, images in pairs)
    fig, axes = plt.subplots(  # a first, narrower column holds each row's label, unrotated
        len(pairs),
        n_cols + 1,
        figsize=(1.7 * n_cols + 1.3, 2.0 * len(pairs)),
        squeeze=False,
        gridspec_kw={"width_ratios": [0.75] + [1.0] * n_cols},
    )
    for row, (label, images) in zip(axes, pairs, strict=True):
        for ax in row:
            ax.axis("off")
        row[0].text(0.95, 0.5, _wrapped(label, 12), ha="right", va="center", fontsize=9)
        for j, (image_id, before, after) in enumerate(images):
            for k, (pixels, name) in enumerate(((before, "original"), (after, "harmonized"))):
                ax = row[1 + 2 * j + k]
                ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
                ax.set_title(f"{name}\n…{image_id[-10:]}" if k == 0 else name, fontsize=7)
    fig.suptitle("Before / after", fontsize=11)
    return _png(fig)
