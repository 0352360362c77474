"""`harmonize bench train`: GAN training throughput and memory, tuned vs the reference recipe,
and one method against CycleGAN at the same size.

Every configuration trains a method's published architecture (default widths: CycleGAN's and
CUT's ResNet-9 generator and 70x70 PatchGAN, UNIT's shared-latent networks) on the same random
crops:

- reference: batch 1, fp32, eager, NCHW (the published recipe's execution);
- tuned: a larger batch, and on CUDA what training does there by default: bf16 autocast,
  channels-last memory, ``torch.compile``, Adam's fused kernels and cuDNN's autotuner
  (``harmonize bench device`` also times it replayed as CUDA graphs).

Throughput is image pairs per second (one pair = one source and one target crop) over timed
steps after warm-up steps (which absorb compilation). Peak memory is what training added to
the process: on CUDA the peak of ``torch.cuda.max_memory_allocated``; on a CPU the process's
peak resident set (``ru_maxrss``) less its resident set before the networks were built. With
``isolate`` (the default) each configuration runs in a fresh process, so no configuration's
allocator cache or compiled kernels are charged to another. For a method other than CycleGAN,
CycleGAN runs the same configurations and the ratios method / CycleGAN are printed (CUT's
paper: about 2x the speed and half the memory). Losses are not compared: only speed and memory.
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from typing import Any

import psutil
import torch

from harmonize.gan.recipe import Precision
from harmonize.models.registry import gan_parts

BASELINE = "cyclegan"


@dataclass(frozen=True)
class Variant:
    """One configuration to time: a method's published recipe at one batch and execution."""

    method: str
    name: str
    batch: int
    crop: int
    precision: Precision
    channels_last: bool
    compile: bool
    steps: int
    warmup: int
    fused_optimizer: bool = False
    cudnn_benchmark: bool = False
    cuda_graphs: bool = False


def measure_variant(variant: Variant) -> dict[str, Any]:
    """Train ``variant`` for its warm-up and timed steps in this process; its pairs/s and the
    peak memory training added (bytes), as the module docstring defines them."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = psutil.Process().memory_info().rss
    torch.backends.cudnn.benchmark = variant.cudnn_benchmark
    recipe = gan_parts(variant.method).recipe(
        None,  # the method's published defaults
        steps=10_000,
        device=device,
        seed=0,
        precision=variant.precision,
        channels_last=variant.channels_last,
        compile=variant.compile,
        cuda_graphs=variant.cuda_graphs,
        fused_optimizer=variant.fused_optimizer,
    )
    gen = torch.Generator().manual_seed(0)
    shape = (variant.batch, 1, variant.crop, variant.crop)
    a = (torch.rand(shape, generator=gen) * 2 - 1).to(device)
    b = (torch.rand(shape, generator=gen) * 2 - 1).to(device)
    for _ in range(variant.warmup + (3 if variant.compile else 0)):
        recipe.train_step(a, b)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(variant.steps):
        recipe.train_step(a, b)  # returns python floats: one sync per step, as in training
    if cuda:
        torch.cuda.synchronize()
    rate = variant.batch * variant.steps / (time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - before
    else:  # ru_maxrss is in KiB on Linux; the peak of the whole process, reached after `before`
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    row = {**asdict(variant), "pairs_per_s": rate, "peak_bytes": max(peak, 0)}
    # Compiling can fail on a machine (training then goes on eagerly): say what really ran.
    return {**row, "compile": recipe.compiled, "cuda_graphs": recipe.cuda_graphs}


def _measure_isolated(variant: Variant) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure_variant, variant).result()


def run_train_benchmark(
    method: str = BASELINE,
    crop_size: int | None = None,
    batch_size: int | None = None,
    steps: int = 5,
    warmup: int = 2,
    compile: bool | None = None,
    isolate: bool = True,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Print and return pairs/s and peak memory of ``method``'s reference recipe and tuned
    configuration (and CycleGAN's, with the ratios, when ``method`` is another GAN)."""
    gan_parts(method)  # an unknown or classical method fails here, in one sentence
    cuda = torch.cuda.is_available()
    crop = crop_size or (256 if cuda else 128)
    batch = batch_size or (16 if cuda else 4)
    compile = cuda if compile is None else compile
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    echo(f"machine: {platform.machine()}, {where}, torch {torch.__version__}")
    tuned = (
        f"tuned: batch {batch}, {'bf16' if cuda else 'fp32'}"
        f"{', channels-last, fused Adam, cuDNN autotuner' if cuda else ''}"
        f"{', compiled' if compile else ''}"
    )
    configurations: list[tuple[str, int, Precision, bool, bool]] = [
        ("reference: batch 1, fp32, eager", 1, "fp32", False, False),
        (tuned, batch, "bf16" if cuda else "fp32", cuda, compile),
    ]
    methods = [method] if method == BASELINE else [method, BASELINE]
    measure = _measure_isolated if isolate else measure_variant
    rows = [  # ``gpu``: the tuning training applies on GPUs (channels-last, fused Adam, cuDNN)
        measure(
            Variant(
                m,
                name,
                b,
                crop,
                precision,
                gpu,
                compiled,
                steps,
                warmup,
                fused_optimizer=gpu,
                cudnn_benchmark=gpu,
            )
        )
        for m in methods
        for name, b, precision, gpu, compiled in configurations
    ]
    result: dict[str, Any] = {"method": method, "crop": crop, "rows": rows, "device": where}
    result["speedup"] = rows[1]["pairs_per_s"] / rows[0]["pairs_per_s"]
    processes = "one process each" if isolate else "one process"
    echo(
        f"\nbench train: {', '.join(methods)} (published widths), {crop}x{crop} crops, "
        f"{steps} timed steps after warm-up, {processes}"
    )
    echo("| method | configuration | pairs/s | peak memory (MiB) |")
    echo("|---|---|---:|---:|")
    for row in rows:
        echo(
            f"| {row['method']} | {row['name']} | {row['pairs_per_s']:.2f} | "
            f"{row['peak_bytes'] / 2**20:.0f} |"
        )
    echo(f"{method} tuned / reference: {result['speedup']:.2f}x (target on one H100: >= 8x)")
    if method != BASELINE:
        result["vs_baseline"] = [
            {
                "configuration": mine["name"],
                "speed": mine["pairs_per_s"] / base["pairs_per_s"],
                "memory": mine["peak_bytes"] / max(base["peak_bytes"], 1),
            }
            for mine, base in zip(rows[:2], rows[2:], strict=True)
        ]
        for ratio in result["vs_baseline"]:
            echo(
                f"{method} / {BASELINE}, {ratio['configuration'].split(':')[0]}: "
                f"speed {ratio['speed']:.2f}x, peak memory {ratio['memory']:.2f}x"
            )
    return result
