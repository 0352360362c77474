"""What every model card says about a harmonizer beyond how it was made: the sites it is meant
for, its training data, its measured validation figures and its known failure modes.

The failure modes are facts measured in docs/results.md, written once here per method
(``FAILURE_MODES``) and per neural output mode (``MODE_FAILURE_MODES``); the fitting
(``methods/fit.py``) and training (``training/gan.py``) code add ``intended_use`` to the card
they write, and the report shows it per model.

A card's ``intended_use``::

    {"source_site": "mc-like", "target_site": "shenzhen-like",
     "training_data": {"target_uri": "...", "n_images": {"target": 64}},
     "known_failure_modes": ["...", ...]}

plus, beside it, the card's ``validation`` (neural: ``training/validate.py``; classical: the
target images passed through the fitted model, ``classical_validation``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FAILURE_MODES: dict[str, tuple[str, ...]] = {
    "histogram": (
        "one global intensity map per image: spatially varying differences (vendor processing, "
        "local contrast, grid lines, noise texture) stay as they were (cr-grid -> processed-dr: "
        "no AUC recovered, site detector still 1.000)",
        "borders, shutters and markers are moved with the intensities, not removed: bright "
        "pixels can be pushed into the target's white shutter range (raw-dr -> processed-dr)",
        "any large histogram shift costs SSIM whatever the method (0.70-0.72 on the synthetic "
        "pair, 0.667 on real Montgomery -> Shenzhen)",
    ),
    "nyul": (
        "one global piecewise-linear map per image: spatially varying differences (vendor "
        "processing, grid lines, noise texture) stay as they were (cr-grid -> processed-dr: no "
        "AUC recovered, site detector still 1.000)",
        "borders, shutters and markers are moved with the intensities, not removed",
        "landmarks fitted on the target only: a source whose histogram has another shape "
        "(a large black mask, a white shutter) gets its landmarks mapped onto the wrong tissue",
    ),
    "multiscale": (
        "one gain per detail band per image: a difference that varies across the image (a "
        "border, a mask, one region processed otherwise) is matched on average only",
        "band energies include the anatomy: images whose content differs from the target's "
        "(children, another projection, large implants) get their detail scaled towards the "
        "target's typical images",
        "histogram matching follows the band gains: its failure modes apply (borders and "
        "shutters moved with the intensities)",
        "detail the source lacks (a blur, missing edge enhancement) is not restored: bands are "
        "only damped by default, never boosted",
    ),
    "cyclegan": (
        "short CPU training: SSIM(original, harmonized) stays below 0.80 on the synthetic pair "
        "(0.78 curve, 0.65 direct) while the histogram distance falls by about half",
        "on a global shift it translates the look less completely than histogram matching "
        "(W1 -42 % vs -94 % on the synthetic pair)",
        "images that already look like the target can be changed (direct mode: in-domain AUC "
        "-0.05 to -0.09)",
    ),
    "unit": (
        "can learn a negative of the source (2 discriminator scales: pixel correlation -0.9); "
        "curve mode refuses such a generator, direct mode applies it",
        "on processing shifts (raw-dr, cr-grid -> processed-dr) it lowers the AUC, also on the "
        "target's own images (in-domain AUC 0.61 after it): findings are not kept",
        "low validation SSIM on processing shifts (0.31-0.32 direct) is the card's early "
        "warning: check it before a run",
    ),
    "cut": (
        "images that already look like the target are changed: in-domain AUC -0.07 in every "
        "mode on cr-grid -> processed-dr",
        "one-sided (no cycle loss): nothing forces the translation to keep fine structure, so "
        "direct mode moves furthest from the truth",
    ),
}
"""Per method: what is known to go wrong, measured (docs/results.md)."""

MODE_FAILURE_MODES: dict[str, str] = {
    "direct": "direct mode (the generator at full resolution) may invent or remove structure: "
    "it costs AUC on every pair measured and moves furthest from the truth",
    "curve": "curve mode applies one monotone curve per image: spatially varying differences "
    "stay, and a generator that makes negatives is refused",
    "local": "local mode (a coarse grid of curves and band gains) follows spatially varying "
    "differences, but changes images that already look right more than curve mode",
}
"""Per neural output mode: what it cannot do (docs/results.md)."""


def failure_modes(method: str, modes: Sequence[str] = ()) -> list[str]:
    """The known failure modes of ``method`` and of each of its output ``modes``."""
    return [*FAILURE_MODES.get(method, ()), *(MODE_FAILURE_MODES[m] for m in modes)]


def site_name(uri: str | None) -> str | None:
    """An archive's site name: the last part of its URI (``synth`` writes ``OUT/<site>/``)."""
    if not uri:
        return None
    return uri.rstrip("/").rsplit("/", 1)[-1] or None


def intended_use(
    method: str,
    *,
    target_uri: str,
    n_images: Mapping[str, int],
    source_uri: str | None = None,
    modes: Sequence[str] = (),
) -> dict[str, Any]:
    """The card's ``intended_use``: sites (a classical method is fitted on the target alone and
    meant for any source), training data and known failure modes."""
    data: dict[str, Any] = {"target_uri": target_uri, "n_images": dict(n_images)}
    if source_uri is not None:
        data["source_uri"] = source_uri
    return {
        "source_site": site_name(source_uri) if source_uri else "any (fitted on the target only)",
        "target_site": site_name(target_uri),
        "training_data": data,
        "known_failure_modes": failure_modes(method, modes),
    }


def checked_histogram(values: object, bins: int) -> tuple[np.ndarray | None, str]:
    """``values`` as a usable histogram of ``bins`` bins (finite, non-negative, not all zero),
    or None and what is wrong with it (a phrase after "a target_histogram")."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None, "that is not a list of numbers"
    if arr.shape != (bins,):
        return None, f"of shape {arr.shape}, expected {bins} bins"
    if not (np.all(np.isfinite(arr)) and np.all(arr >= 0) and arr.sum() > 0):
        return None, "with negative, non-finite or all-zero bins"
    return arr, ""


def card_target_histogram(card: Mapping[str, Any], bins: int) -> np.ndarray | None:
    """The card's ``target_histogram`` when it is a usable histogram of ``bins`` bins."""
    return checked_histogram(card.get("target_histogram"), bins)[0]
