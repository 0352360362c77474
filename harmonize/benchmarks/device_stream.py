"""The streaming section of `harmonize bench device`: ``run`` with the local executor (no Ray),
``curve`` against ``direct`` mode, images/s end to end and per stage.

The archive is synthetic (``harmonize.synth``, uncompressed DICOM, so that the CPU codec weighs
little; the decode section measures JPEG 2000): a few distinct images, built on this machine's
CPUs first, copied to the archive's size. The generator is CycleGAN's default architecture
with its initial weights and the classifier an untrained ResNet-18: speed does not depend on
training (with ``smoke``, the generator works at 64 px instead of 286). Each mode runs once
on one image (warm-up: model load, kernels) before its timed run, which takes as many of the
archive's images as the section's budget leaves time for at the warm-up's pace; per-stage
figures are the manifest's ``*_s`` columns (mean seconds per ok row).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from harmonize.benchmarks.device import Plan, Section

METHOD = "cyclegan"
TARGET_CURVE_IMAGES_PER_S = 300.0
TARGET_CURVE_OVER_DIRECT = 15.0


def _archive(plan: Plan, distinct: int, total: int, matrix: int) -> str:
    from harmonize.synth import synthesize_archive

    source = plan.workdir / "source"
    synthesize_archive(
        str(source / "distinct"), ["portable-like"], distinct, seed=3, matrix=matrix, progress=False
    )
    files = sorted((source / "distinct").rglob("*.dcm"))
    for i in range(total - len(files)):  # copies: the same work per object, more objects
        shutil.copyfile(files[i % len(files)], source / f"copy-{i:05d}.dcm")
    return str(source)


def _models(plan: Plan) -> tuple[str, str]:
    from harmonize.classifier.config import BLOCKS
    from harmonize.classifier.model import save_classifier
    from harmonize.classifier.network import build_classifier
    from harmonize.models.files import write_network
    from harmonize.models.registry import gan_parts

    model_uri = str(plan.workdir / "model")
    recipe = gan_parts(METHOD).recipe({}, steps=1, device=torch.device("cpu"), seed=0)
    write_network(
        model_uri,
        METHOD,
        {**recipe.model_config(), "load_size": 64 if plan.smoke else 286},
        recipe.generator_state(),
        card={"note": "untrained weights, for speed benchmarks only"},
    )
    classifier_uri = str(plan.workdir / "classifier")
    size, width = (64, 16) if plan.smoke else (256, 64)
    config = {"blocks": list(BLOCKS), "width": width, "input_size": size}
    torch.manual_seed(0)
    network = build_classifier(config)
    save_classifier(
        classifier_uri, config, network.state_dict(), card={"note": "untrained, for speed only"}
    )
    return model_uri, classifier_uri


def run_streaming(plan: Plan, section: Section, echo: Callable[[str], Any]) -> None:
    import pandas as pd

    from harmonize.io.manifest import STAGE_SECONDS
    from harmonize.run.local import LocalExecutor
    from harmonize.run.orchestrate import run_harmonization
    from harmonize.run.spec import RunOptions

    distinct, total, matrix = (1, 2, 64) if plan.smoke else (8, 48, 2048)
    start = time.perf_counter()
    source = _archive(plan, distinct, total, matrix)
    model_uri, classifier_uri = _models(plan)
    section.details.update(
        images=total,
        matrix=matrix,
        build_s=time.perf_counter() - start,
        executor="local",
        models="untrained CycleGAN generator and ResNet-18 classifier (speed only)",
    )
    rates: dict[str, float] = {}
    for mode in ("curve", "direct"):
        if time.perf_counter() > plan.deadline:
            section.missing(f"{mode} mode", "the section's time budget was spent")
            continue
        common: dict[str, Any] = {
            "input_uri": source,
            "method": METHOD,
            "model_uri": model_uri,
            "executor": LocalExecutor(),
            "mode": mode,
            "classifier_uri": classifier_uri,
        }
        t = time.perf_counter()
        run_harmonization(
            out_uri=str(plan.workdir / f"warmup-{mode}"),
            options=RunOptions(progress=False, limit=1),
            **common,
        )
        # As many images as the budget leaves time for, by the warm-up's (slower) pace: a slow
        # mode is timed on fewer images rather than overrunning the benchmark.
        left, warmup = plan.deadline - time.perf_counter(), time.perf_counter() - t
        n = max(2, min(total, int(0.8 * left / max(warmup, 1e-3))))
        out = plan.workdir / f"out-{mode}"
        t = time.perf_counter()
        summary = run_harmonization(
            out_uri=str(out), options=RunOptions(progress=False, limit=n), **common
        )
        seconds = time.perf_counter() - t
        ok = summary.counts.get("ok", 0)
        if ok != n:
            section.missing(f"{mode} mode", f"{ok} of {n} images ok ({dict(summary.counts)})")
            continue
        section.details[f"{mode}_images"] = n
        rates[mode] = ok / seconds
        target = TARGET_CURVE_IMAGES_PER_S if mode == "curve" else None
        section.figure(f"{mode} images/s end to end", rates[mode], "images/s", target)
        manifest = pd.read_parquet(out / "manifest")
        for column in STAGE_SECONDS:
            mean = float(manifest[column].fillna(0.0).mean())
            if mean > 0:
                section.figure(f"{mode} {column[:-2]} images/s", 1.0 / mean, "images/s")
        if "decoder" in manifest:
            section.details[f"{mode}_decoders"] = ", ".join(sorted(set(manifest["decoder"])))
        echo(f"  streaming {mode}: {rates[mode]:.2f} images/s")
    if len(rates) == 2:
        section.figure(
            "curve / direct", rates["curve"] / rates["direct"], "x", TARGET_CURVE_OVER_DIRECT
        )
