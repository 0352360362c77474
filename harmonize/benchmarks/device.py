"""`harmonize bench device`: the one prepared GPU benchmark (training, streaming, SSIM, decode),
Ray-free, each section within its own time budget; writes OUT/device-bench.json and .md.

It runs where Ray is not installed (a bare GPU machine with torch, no network): the training
section uses the training step without Ray Train, the streaming section the ``local`` executor.
Every section either reports its figures, each with its target and the ratio against it, or says
``unmeasured: <reason>`` (no GPU, no nvImageCodec, a missing package, its budget spent). With
``smoke`` every size is tiny so that the whole runs on a CPU in seconds (the test suite does):
smoke figures say nothing about the targets.

Sections: ``training`` (``benchmarks.train.measure_variant``: the reference recipe against the
tuned configuration for every GAN of the registry, each configuration in a fresh process);
``streaming`` (``benchmarks.device_stream``); ``ssim`` (our SSIM on the device against
scikit-image on the same images); ``decode`` (``benchmarks.device_decode``); ``checks``
(``benchmarks.device_checks``: the GPU-only tests, pass/fail).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmonize.errors import HarmonizeError

SECTIONS = ("training", "streaming", "ssim", "decode", "checks")
# Seconds each section may take on a GPU (with its set-up); the whole stays under 8 minutes.
BUDGET_S = {
    "training": 220.0,
    "streaming": 100.0,
    "ssim": 30.0,
    "decode": 60.0,
    "checks": 50.0,
}
SMOKE_BUDGET_S = {
    "training": 30.0,
    "streaming": 30.0,
    "ssim": 10.0,
    "decode": 20.0,
    "checks": 40.0,
}


@dataclass
class Section:
    """One section's outcome: its figures (each with a target) or why it is unmeasured."""

    name: str
    figures: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    unmeasured: list[str] = field(default_factory=list)  # "what: why", one per missing figure
    seconds: float = 0.0

    def figure(
        self,
        name: str,
        value: float,
        unit: str,
        target: float | None = None,
        at_most: bool = False,
    ) -> None:
        """Record a figure; with ``target``, whether it meets it (>= target, or <= with
        ``at_most``) and its ratio to it."""
        row: dict[str, Any] = {"name": name, "value": float(value), "unit": unit}
        if target is not None:
            row["target"] = f"{'<=' if at_most else '>='} {target:g}"
            row["meets"] = bool(value <= target if at_most else value >= target)
            row["of_target"] = float(value / target) if target else None
        self.figures.append(row)

    def missing(self, what: str, reason: str) -> None:
        self.unmeasured.append(f"{what}: {reason}")


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run: the GPU figures, or the tiny smoke sizes."""

    smoke: bool
    cuda: bool
    workdir: Path
    deadline: float = 0.0  # set per section: time.perf_counter() value it should end by

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name() if cuda else None,
    }
    try:
        from nvidia import nvimgcodec  # type: ignore[import-not-found, unused-ignore]

        info["nvimgcodec"] = str(getattr(nvimgcodec, "__version__", "installed"))
    except Exception:  # noqa: BLE001 - absent or broken: the decode section says why
        info["nvimgcodec"] = None
    return info


# -- training ----------------------------------------------------------------------------------
def _measure_child(variant: Any, queue: Any) -> None:
    from harmonize.benchmarks.train import measure_variant

    try:
        queue.put(("ok", measure_variant(variant)))
    except Exception as err:  # noqa: BLE001 - reported as the variant's reason
        queue.put(("error", f"{type(err).__name__}: {str(err)[:200]}"))


def _measure_in_fresh_process(variant: Any, timeout: float) -> dict[str, Any]:
    """``measure_variant`` in a spawned process, killed past ``timeout`` seconds."""
    ctx = get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure_child, args=(variant, queue), daemon=True)
    proc.start()
    try:
        status, value = queue.get(timeout=max(timeout, 1.0))
    except Exception as err:  # queue.Empty: the budget ran out
        raise TimeoutError(f"not done within the section's remaining {timeout:.0f} s") from err
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status != "ok":
        raise RuntimeError(value)
    return dict(value)


def run_training(plan: Plan, section: Section, echo: Callable[[str], Any]) -> None:
    """Every GAN's reference recipe against its tuned configuration (what training does on a
    GPU by default), and for the first (CycleGAN) also the tuned configuration replayed as CUDA
    graphs; each ratio to the reference against the 8x target."""
    from harmonize.benchmarks.train import Variant, measure_variant
    from harmonize.models.registry import METHODS, NEURAL

    crop, batch = (32, 2) if plan.smoke else (256, 16)
    ref_steps, tuned_steps, warmup = (1, 1, 0) if plan.smoke else (20, 10, 3)
    gpu = plan.cuda
    tuned = Variant(
        "",
        "tuned",
        batch,
        crop,
        "bf16" if gpu else "fp32",
        gpu,
        gpu,
        tuned_steps,
        warmup,
        fused_optimizer=gpu,
        cudnn_benchmark=gpu,
    )
    configurations = [
        Variant("", "reference", 1, crop, "fp32", False, False, ref_steps, warmup),
        tuned,
        replace(tuned, name="tuned + CUDA graphs", cuda_graphs=True),
    ]
    section.details["crop"], section.details["rows"] = crop, []
    methods = [m for m, entry in METHODS.items() if entry.kind == NEURAL]
    if plan.smoke:  # seconds matter on a CPU; UNIT's discriminators need crops >= 64 px
        for method in methods[1:]:
            section.missing(method, "smoke runs CycleGAN only (the GPU run times every GAN)")
        methods = methods[:1]
    for method in methods:
        rates: dict[str, float] = {}
        for configuration in configurations:
            variant = replace(configuration, method=method)
            if variant.cuda_graphs and (not gpu or method != methods[0]):
                if method == methods[0]:
                    section.missing(f"{method} {variant.name}", "CUDA graphs need a GPU")
                continue
            left = plan.deadline - time.perf_counter()
            if left <= 1:
                section.missing(f"{method} {variant.name}", "the section's time budget was spent")
                continue
            try:  # smoke: in this process (a fresh one costs seconds of imports on a CPU)
                row = (
                    measure_variant(variant)
                    if plan.smoke
                    else _measure_in_fresh_process(variant, left)
                )
            except Exception as err:  # noqa: BLE001 - one configuration's failure is its reason
                section.missing(f"{method} {variant.name}", f"{type(err).__name__}: {err}"[:300])
                continue
            section.details["rows"].append(row)
            if variant.compile and not row["compile"]:
                section.missing(f"{method} {variant.name} compiled", "compiling failed: ran eager")
            rates[variant.name] = row["pairs_per_s"]
            section.figure(f"{method} {variant.name} pairs/s", row["pairs_per_s"], "pairs/s")
            section.figure(f"{method} {variant.name} peak memory", row["peak_bytes"] / 2**20, "MiB")
            echo(f"  training {method} {variant.name}: {row['pairs_per_s']:.2f} pairs/s")
        for name, rate in rates.items():
            if name != "reference" and "reference" in rates:
                section.figure(f"{method} {name} / reference", rate / rates["reference"], "x", 8.0)


# -- SSIM --------------------------------------------------------------------------------------
def run_ssim(plan: Plan, section: Section, echo: Callable[[str], Any]) -> None:
    from skimage.metrics import structural_similarity

    from harmonize.benchmarks.ssim import PARITY_TOLERANCE, TARGET_SPEEDUP, radiograph_like_pair
    from harmonize.metrics.ssim import ssim

    size, n = (64, 2) if plan.smoke else (2048, 8)
    rng = np.random.default_rng([0, size])
    pairs = [radiograph_like_pair(size, rng) for _ in range(n)]
    start = time.perf_counter()
    reference = np.array([structural_similarity(x, y, data_range=1.0) for x, y in pairs])
    skimage_s = (time.perf_counter() - start) / n
    xs = torch.from_numpy(np.stack([p[0] for p in pairs])).to(plan.device)
    ys = torch.from_numpy(np.stack([p[1] for p in pairs])).to(plan.device)

    def ours() -> np.ndarray:
        values = ssim(xs, ys, data_range=1.0)
        if plan.cuda:
            torch.cuda.synchronize()
        return np.asarray(values.cpu().numpy())

    ours()  # warm-up (kernels, allocator)
    repeats, start = 3, time.perf_counter()
    for _ in range(repeats):
        values = ours()
    ours_s = (time.perf_counter() - start) / (repeats * n)
    diff = float(np.max(np.abs(values - reference)))
    section.details.update(size=size, images=n, device=plan.device)
    section.figure("scikit-image ms/image (one CPU process)", 1e3 * skimage_s, "ms")
    section.figure(f"ours ms/image ({plan.device}, batch of {n})", 1e3 * ours_s, "ms")
    section.figure("ours / scikit-image speed", skimage_s / ours_s, "x", TARGET_SPEEDUP)
    section.figure("max |ours - scikit-image|", diff, "", PARITY_TOLERANCE, at_most=True)
    echo(f"  ssim {size}px: {skimage_s / ours_s:.1f}x scikit-image, max diff {diff:.1e}")


# -- the whole run -----------------------------------------------------------------------------
def _runners() -> dict[str, Callable[[Plan, Section, Callable[[str], Any]], None]]:
    from harmonize.benchmarks.device_checks import run_checks
    from harmonize.benchmarks.device_decode import run_decode
    from harmonize.benchmarks.device_stream import run_streaming

    return {
        "training": run_training,
        "streaming": run_streaming,
        "ssim": run_ssim,
        "decode": run_decode,
        "checks": run_checks,
    }


def run_device_benchmark(
    out_dir: str | Path,
    *,
    smoke: bool = False,
    sections: Sequence[str] = SECTIONS,
    workdir: str | Path | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Run ``sections`` (each within its budget), write ``out_dir``/device-bench.json and
    device-bench.md, and return the JSON's content.

    Raises:
        HarmonizeError: an unknown section name.
    """
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        raise HarmonizeError(
            f"bench device: unknown section(s) {unknown or '(none given)'}; choose among "
            f"{', '.join(SECTIONS)}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    owned = workdir is None
    base = Path(workdir or tempfile.mkdtemp(prefix="harmonize-device-"))
    base.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    info = machine()
    echo(f"machine: {info['machine']}, {info['cpus']} CPUs, GPU: {info['gpu'] or 'none'}")
    budgets = SMOKE_BUDGET_S if smoke else BUDGET_S
    results: list[Section] = []
    runners = _runners()
    try:
        for name in SECTIONS:
            if name not in sections:
                continue
            section = Section(name)
            start = time.perf_counter()
            plan = Plan(smoke, cuda, base / name, deadline=start + budgets[name])
            plan.workdir.mkdir(parents=True, exist_ok=True)
            try:
                runners[name](plan, section, echo)
            except Exception as err:  # noqa: BLE001 - a section that cannot run says why
                section.missing(name, f"{type(err).__name__}: {err}"[:300])
            section.seconds = time.perf_counter() - start
            if section.seconds > budgets[name]:
                section.details["over_budget_s"] = section.seconds - budgets[name]
            if not cuda and not smoke:
                section.details["note"] = "no GPU here: these are CPU figures"
            results.append(section)
            echo(f"  {name}: {section.seconds:.1f} s")
    finally:
        if owned:
            shutil.rmtree(base, ignore_errors=True)
    report = {
        "smoke": smoke,
        "machine": info,
        "sections": {
            s.name: {
                "seconds": s.seconds,
                "figures": s.figures,
                "unmeasured": s.unmeasured,
                "details": s.details,
            }
            for s in results
        },
    }
    (out / "device-bench.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "device-bench.md").write_text(markdown(report))
    echo(f"wrote {out / 'device-bench.json'} and {out / 'device-bench.md'}")
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: machine, then one table per section and its unmeasured lines."""
    m = report["machine"]
    lines = [
        "# harmonize bench device"
        + (" (smoke: tiny sizes, not comparable to targets)" if report["smoke"] else ""),
        "",
        f"- machine: {m['machine']}, {m['cpus']} CPUs, python {m['python']}",
        f"- GPU: {m['gpu'] or 'none'}; torch {m['torch']}, CUDA {m['cuda'] or 'none'}",
        f"- nvImageCodec: {m['nvimgcodec'] or 'not installed'}",
    ]
    for name, sec in report["sections"].items():
        lines += ["", f"## {name} ({sec['seconds']:.1f} s)", ""]
        if sec["figures"]:
            lines += ["| figure | value | target | of target |", "|---|---:|---|---:|"]
            for f in sec["figures"]:
                target = f.get("target", "")
                if target:
                    target += " (met)" if f["meets"] else " (not met)"
                share = f"{f['of_target']:.2f}" if f.get("of_target") is not None else ""
                lines.append(f"| {f['name']} | {f['value']:.4g} {f['unit']} | {target} | {share} |")
        for line in sec["unmeasured"]:
            lines.append(f"- unmeasured: {line}")
        notes = {k: v for k, v in sec["details"].items() if isinstance(v, str | int | float)}
        if notes:
            lines += ["", "; ".join(f"{k}: {v}" for k, v in notes.items())]
    return "\n".join(lines) + "\n"
