"""`harmonize bench train-data`: training data prepared on the cluster against one process, the
memory of training from shards for an archive and one 4x larger, and the loop's speed from
shards against memory.

- preparation: the same two-site archive (the 4x one) decoded and resized to ``load_size``
  (a) in one process, by ``prepare_training_data``'s thread pool (what the driver did before
  shards), and (b) into shards as one task per shard (``prepare_training_shards`` with the
  caller's ``runner``: Ray tasks); images/s of each and the ratio. Ray is started first and its
  task workers warmed up on the small archive (a training cluster is already up); that time is
  printed separately.
- memory: a short ``train_distributed`` run (one CPU worker, a small CycleGAN) from a fresh
  cache, for the archive and one 4x larger: peak PSS of the driver (this process) and of the
  worker (its ``ray::RayTrainWorker`` process), sampled every 0.2 s, and the growth.
- steps/s: the training loop's steps in this process on the same images held in memory and
  read from shards (same settings, same draws).
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from harmonize.benchmarks.run import PeakMemory
from harmonize.training.config import TrainConfig
from harmonize.training.data import TrainingData, prepare_training_data, prepare_training_shards
from harmonize.training.shards import ShardRunner

SITES = ("mc-like", "shenzhen-like")
WORKER = "ray::RayTrainWorker"


class ProcessPeaks(PeakMemory):
    """Samples, in a background thread, the PSS of this process and of its descendant Ray Train
    workers; ``driver`` and ``worker`` are the peaks in bytes (the largest worker's)."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(interval)
        self.driver, self.worker = 0, 0

    def sample(self) -> None:
        me = psutil.Process()
        self.driver = max(self.driver, me.memory_full_info().pss)
        for proc in me.children(recursive=True):
            try:
                if proc.cmdline()[:1] and proc.cmdline()[0].startswith(WORKER):
                    self.worker = max(self.worker, proc.memory_full_info().pss)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue


def _config(load_size: int, crop_size: int, steps: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        load_size=load_size,
        crop_size=crop_size,
        log_every=steps,
        checkpoint_every=steps,
        validation_images=2,
        model={"ngf": 8, "ndf": 8, "n_blocks": 2},
    )


def _steps_per_second(config: TrainConfig, data: TrainingData, steps: int) -> float:
    """Training steps per second of the loop's task on ``data`` (after one warm-up step)."""
    import torch

    from harmonize.training.gan import GanTask

    task = GanTask(config, data)
    task.setup(torch.device("cpu"), 0, None)
    sampler = np.random.default_rng(0)
    task.train_step(0, sampler)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        task.train_step(step, sampler)
    return steps / (time.perf_counter() - start)


def run_train_data_benchmark(
    start_ray: Callable[[], Any],
    runner: ShardRunner,
    train: Callable[..., dict[str, Any]],
    n_images: int = 32,
    matrix: int = 512,
    load_size: int = 256,
    crop_size: int = 128,
    steps: int = 20,
    workdir: str | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Print and return the three measurements of the module's docstring. ``n_images`` per site
    (the 4x archive: 4x as many); ``start_ray()`` starts or joins Ray, ``runner`` builds shards
    there, ``train`` is ``train_distributed``."""
    from harmonize.io.storage import Storage
    from harmonize.synth import synthesize_archive
    from harmonize.training.job import gan_job

    owned = workdir is None
    base = Path(workdir or tempfile.mkdtemp(prefix="harmonize-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    storage = Storage()
    echo(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, python {platform.python_version()}"
    )
    try:
        archives = {}
        for factor in (1, 4):
            archives[factor] = base / f"archive-x{factor}"
            t = time.perf_counter()
            synthesize_archive(
                str(archives[factor]), list(SITES), n_images * factor, seed=3, matrix=matrix,
                progress=False,
            )  # fmt: skip
            echo(
                f"  built archive-x{factor}: {n_images * factor} images per site of {matrix}px "
                f"in {time.perf_counter() - t:.1f} s"
            )
        t = time.perf_counter()
        start_ray()
        small_source, small_target = (str(archives[1] / site) for site in SITES)
        prepare_training_shards(
            small_source, small_target, load_size, cache_uri=str(base / "warm-up"),
            storage=storage, runner=runner, progress=False,
        )  # fmt: skip
        echo(
            f"  ray start-up and a warm-up preparation of archive-x1 (task workers import "
            f"their modules once): {time.perf_counter() - t:.1f} s (not in the timings below)"
        )

        big_source, big_target = (str(archives[4] / site) for site in SITES)
        n_big = 2 * 4 * n_images
        t = time.perf_counter()
        memory = prepare_training_data(big_source, big_target, load_size, storage, progress=False)
        one_process = n_big / (time.perf_counter() - t)
        t = time.perf_counter()
        sharded = prepare_training_shards(
            big_source, big_target, load_size, cache_uri=str(base / "shards"), storage=storage,
            runner=runner, progress=False,
        )  # fmt: skip
        tasks = n_big / (time.perf_counter() - t)

        config = _config(load_size, crop_size, steps)
        in_memory_steps = _steps_per_second(config, memory, steps)
        sharded_steps = _steps_per_second(config, sharded, steps)
        del memory, sharded  # the driver's memory below is the training call's alone

        rows = []
        for factor in (1, 4):
            source, target = (str(archives[factor] / site) for site in SITES)
            with ProcessPeaks() as peaks:
                summary = train(
                    gan_job(config, source, target),
                    str(base / f"train-x{factor}"),
                    workers=1,
                    storage=storage,
                    progress=False,
                )
            rows.append(
                {
                    "archive": f"x{factor}",
                    "images": sum(summary["n_images"].values()),
                    "driver_peak_pss_mib": peaks.driver / 2**20,
                    "worker_peak_pss_mib": peaks.worker / 2**20,
                }
            )
    finally:
        if owned:
            shutil.rmtree(base, ignore_errors=True)

    def growth(key: str) -> float:
        return 100.0 * (rows[1][key] / rows[0][key] - 1.0) if rows[0][key] else float("nan")

    result = {
        "matrix": matrix,
        "load_size": load_size,
        "prepare_images": n_big,
        "one_process_images_per_s": one_process,
        "tasks_images_per_s": tasks,
        "prepare_speedup": tasks / one_process,
        "in_memory_steps_per_s": in_memory_steps,
        "sharded_steps_per_s": sharded_steps,
        "steps_ratio": sharded_steps / in_memory_steps,
        "rows": rows,
        "driver_growth_pct": growth("driver_peak_pss_mib"),
        "worker_growth_pct": growth("worker_peak_pss_mib"),
    }
    echo(f"\nbench train-data: {matrix}px DICOM -> short side {load_size}, {os.cpu_count()} cores")
    echo(f"| preparation of {n_big} images | images/s |")
    echo("|---|---:|")
    echo(f"| one process (thread pool) | {one_process:.2f} |")
    echo(f"| shards, one task per shard | {tasks:.2f} |")
    echo(f"tasks / one process: {result['prepare_speedup']:.2f}x (target >= 1.6x on 2 cores)")
    echo(
        f"\ntraining steps/s (crop {crop_size}, batch 1, {steps} steps): in memory "
        f"{in_memory_steps:.2f}, from shards {sharded_steps:.2f} "
        f"({result['steps_ratio']:.2f}x; target: no lower)"
    )
    echo("\n| archive | images | driver peak PSS (MiB) | worker peak PSS (MiB) |")
    echo("|---|---:|---:|---:|")
    for r in rows:
        echo(
            f"| {r['archive']} | {r['images']} | {r['driver_peak_pss_mib']:.0f} | "
            f"{r['worker_peak_pss_mib']:.0f} |"
        )
    echo(
        f"growth for 4x the images: driver {result['driver_growth_pct']:+.1f}%, worker "
        f"{result['worker_growth_pct']:+.1f}% (target < 15%)"
    )
    return result
