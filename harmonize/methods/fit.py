"""Fitting a classical harmonizer (histogram matching, Nyúl) to a target-site archive.

A fit is map/reduce: each target image is decoded and summarised by its landmarks (a quantile
vector, a few KB) in a pool of threads (pixel decoders and numpy release the GIL for most of the
work); the landmarks are then reduced into the model.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from harmonize import __version__
from harmonize.errors import ConfigError, HarmonizeError
from harmonize.io.archive import DICOM_SUFFIXES, list_images
from harmonize.io.storage import Storage
from harmonize.methods.base import ClassicalHarmonizer
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram, wasserstein_1d
from harmonize.models.cards import intended_use
from harmonize.models.registry import CLASSICAL, create_harmonizer, method_names

VALIDATION_IMAGES = 8  # target images passed through the fitted model for the card


@dataclass(frozen=True)
class FitResult:
    harmonizer: ClassicalHarmonizer
    model_uri: str
    card: dict[str, Any]


def _landmarks_of(
    task: tuple[str, ClassicalHarmonizer, Storage],
) -> tuple[str, np.ndarray | None, np.ndarray | None, str]:
    """Map step: decode one object -> (uri, landmarks, histogram, error message or "")."""
    from harmonize.dicom.decode import decode_dicom

    uri, harmonizer, storage = task
    try:
        pixels = decode_dicom(storage.read(uri)).pixels
        return uri, harmonizer.landmarks(pixels), intensity_histogram(pixels, bins=HIST_BINS), ""
    except HarmonizeError as err:
        return uri, None, None, str(err)


def fit_classical(
    method: str,
    target_uri: str,
    out_uri: str,
    *,
    config: Any = None,
    storage: Storage | None = None,
    suffixes: tuple[str, ...] = DICOM_SUFFIXES,
    workers: int | None = None,
    progress: bool = True,
) -> FitResult:
    """Fit ``method`` on every image under ``target_uri`` and save it to ``out_uri``.

    ``config`` is the method's config dataclass or a mapping of its settings. Unreadable
    objects are skipped and counted in the model card (a fit needs many images, not every
    image). Fitting is deterministic: the same images and config give the same model (and the
    same model hash), so a re-run of ``harmonize run`` after an identical re-fit skips.

    Raises:
        ConfigError: not a classical method, a bad config, or no image could be read.
    """
    if method not in method_names(CLASSICAL):
        raise ConfigError(
            f'"{method}" is not a classical method ({", ".join(method_names(CLASSICAL))}); '
            "neural methods are trained with `harmonize train cyclegan|unit`"
        )
    store = storage or Storage()
    harmonizer = create_harmonizer(method, config)  # validates the config before any work
    objects = list_images(target_uri, store, what="target images", suffixes=suffixes)
    start = time.perf_counter()
    tasks = [(o.uri, harmonizer, store) for o in objects]
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    landmarks, hists, errors, readable = [], [], [], []
    from tqdm import tqdm

    with ThreadPoolExecutor(n_workers) as pool:
        results = pool.map(_landmarks_of, tasks)
        for uri, lm, hist, err in tqdm(
            results,
            total=len(tasks),
            desc=f"fit {method}",
            unit="img",
            disable=not progress,
            leave=False,
        ):
            if err:
                errors.append(f"{uri}: {err}")
            else:
                landmarks.append(lm)
                hists.append(hist)
                readable.append(uri)
    if not landmarks:
        raise ConfigError(
            f'none of the {len(tasks)} objects under "{target_uri}" could be read: {errors[:3]}'
        )
    harmonizer.fit_landmarks(landmarks)
    target_histogram = np.mean(hists, axis=0)
    card = {
        "method": method,
        "target_uri": target_uri,
        "n_images": len(landmarks),
        "n_unreadable": len(errors),
        "unreadable_examples": errors[:10],
        "config": harmonizer.state()["config"],
        "code_version": __version__,
        "fit_seconds": round(time.perf_counter() - start, 3),
        "created_at": datetime.now(UTC).isoformat(),
        "target_histogram": [float(v) for v in target_histogram],
        "intended_use": intended_use(
            method, target_uri=target_uri, n_images={"target": len(landmarks)}
        ),
        "validation": in_domain_validation(
            harmonizer, readable[:VALIDATION_IMAGES], store, target_histogram
        ),
    }
    model_file = harmonizer.save(out_uri, store, card=card)
    return FitResult(harmonizer, model_file, card)


def in_domain_validation(
    harmonizer: ClassicalHarmonizer,
    uris: list[str],
    storage: Storage,
    target_histogram: np.ndarray,
) -> dict[str, Any]:
    """The card's validation of a classical model: target images passed through it (a fit
    sees no source image), which should come out nearly unchanged: SSIM(original, harmonized)
    and the W1 distance to the target's mean histogram before and after, mean and std."""
    from harmonize.dicom.decode import decode_dicom
    from harmonize.metrics.ssim import SSIM_OPTIONS, smallest_side, ssim

    figures: dict[str, list[float]] = {"ssim": [], "before": [], "after": []}
    for uri in uris:
        try:
            original = decode_dicom(storage.read(uri)).pixels
        except HarmonizeError:  # read once already; a second failure only shrinks the sample
            continue
        harmonized = harmonizer.transform(original)
        if min(original.shape) >= smallest_side(**SSIM_OPTIONS):
            figures["ssim"].append(float(ssim(original, harmonized, **SSIM_OPTIONS)))
        for key, image in (("before", original), ("after", harmonized)):
            hist = intensity_histogram(image, bins=HIST_BINS)
            figures[key].append(wasserstein_1d(hist, target_histogram))
    out: dict[str, Any] = {"images": "target (in-domain)", "n_images": len(figures["before"])}
    names = {"ssim": "ssim", "before": "w1_to_target_before", "after": "w1_to_target_after"}
    for key, name in names.items():
        if figures[key]:
            out["ssim_mean" if key == "ssim" else name] = float(np.mean(figures[key]))
            out[f"{name}_std"] = float(np.std(figures[key]))
    return out
