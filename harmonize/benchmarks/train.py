"""`harmonize bench train`: CycleGAN training throughput, tuned vs the reference recipe.

Both configurations train the same architecture (the published ResNet-9 generator and 70x70
PatchGAN, default widths) on the same random crops in the same process, one after the other:

- reference: batch 1, fp32, eager, NCHW (the published recipe's execution);
- tuned: a larger batch, and on CUDA bf16 autocast, channels-last memory and ``torch.compile``.

Throughput is image pairs per second (one pair = one source and one target crop) over timed
steps after warm-up steps (which absorb compilation). Losses are not compared: only speed.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from harmonize.gan.cyclegan.config import CycleGANConfig
from harmonize.gan.cyclegan.recipe import CycleGANRecipe
from harmonize.gan.recipe import Precision


def _pairs_per_second(
    recipe: CycleGANRecipe, batch: int, crop: int, steps: int, warmup: int, device: torch.device
) -> float:
    gen = torch.Generator().manual_seed(0)
    a = (torch.rand(batch, 1, crop, crop, generator=gen) * 2 - 1).to(device)
    b = (torch.rand(batch, 1, crop, crop, generator=gen) * 2 - 1).to(device)
    for _ in range(warmup):
        recipe.train_step(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        recipe.train_step(a, b)  # returns python floats: one sync per step, as in training
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def run_train_benchmark(
    crop_size: int | None = None,
    batch_size: int | None = None,
    steps: int = 5,
    warmup: int = 2,
    compile: bool | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Print and return pairs/s of the reference recipe and the tuned configuration."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    crop = crop_size or (256 if cuda else 128)
    batch = batch_size or (8 if cuda else 4)
    compile = cuda if compile is None else compile
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    echo(f"machine: {platform.machine()}, {where}, torch {torch.__version__}")
    config = CycleGANConfig()
    variants: list[tuple[str, int, Precision, bool, bool]] = [
        ("reference: batch 1, fp32, eager", 1, "fp32", False, False),
        (
            f"tuned: batch {batch}, {'bf16' if cuda else 'fp32'}"
            f"{', channels-last' if cuda else ''}{', compiled' if compile else ''}",
            batch,
            "bf16" if cuda else "fp32",
            cuda,
            compile,
        ),
    ]
    rows: list[dict[str, Any]] = []
    for name, b, precision, channels_last, compiled in variants:
        recipe = CycleGANRecipe(
            config,
            steps=10_000,
            device=device,
            seed=0,
            precision=precision,
            channels_last=channels_last,
            compile=compiled,
        )
        rate = _pairs_per_second(recipe, b, crop, steps, warmup + (3 if compiled else 0), device)
        rows.append({"variant": name, "batch": b, "pairs_per_s": rate})
        del recipe
        if cuda:
            torch.cuda.empty_cache()
    speedup = rows[1]["pairs_per_s"] / rows[0]["pairs_per_s"]
    echo(
        f"\nbench train: CycleGAN (ngf 64, 9 blocks, PatchGAN 70x70), {crop}x{crop} crops, "
        f"{steps} timed steps after warm-up"
    )
    echo("| configuration | pairs/s |")
    echo("|---|---:|")
    for row in rows:
        echo(f"| {row['variant']} | {row['pairs_per_s']:.2f} |")
    echo(f"tuned / reference: {speedup:.2f}x (target on one H100: >= 8x)")
    return {"crop": crop, "rows": rows, "speedup": speedup, "device": where}
