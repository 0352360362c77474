"""`harmonize bench run`: the streaming run against a sequential loop, and its peak memory.

Both paths do the same work per object (read → decode → harmonize → SSIM + histograms → encode
derived DICOM → write) and write the same manifest; the loop does it in one process (the
``local`` executor), the stream on Ray Data with CPU decode/encode tasks and a harmonizer actor
(the ``ray`` executor); the caller passes the factory that makes both. Ray is started before the
timed runs (a nightly cluster is already up); its start-up time is printed separately. Peak
memory is the largest sum of proportional set sizes (PSS: shared pages counted once) of this
process and all its descendants (Ray's raylet, workers, object store), sampled every 0.2 s while
a run is in flight, for an archive and for one 4x larger.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import psutil

from harmonize.errors import HarmonizeError
from harmonize.methods.fit import fit_classical
from harmonize.run.orchestrate import Executor, ExecutorFactory, run_harmonization
from harmonize.run.spec import RunOptions


class PeakMemory:
    """Samples the PSS of this process tree in a background thread; ``peak`` in bytes.
    Subclasses sample something else by overriding ``sample``."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def tree_pss() -> int:
        root = psutil.Process()
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def sample(self) -> None:
        self.peak = max(self.peak, self.tree_pss())

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _build(
    workdir: Path, n_images: int, matrix: int, method: str, echo: Callable
) -> dict[str, str]:
    from harmonize.synth import synthesize_archive

    paths = {"target": str(workdir / "target"), "model": str(workdir / f"model-{method}")}
    synthesize_archive(
        paths["target"], ["shenzhen-like"], 16, seed=1, matrix=matrix, progress=False
    )
    fit_classical(method, paths["target"], paths["model"], progress=False)
    for factor in (1, 4):
        key = f"source-x{factor}"
        paths[key] = str(workdir / key)
        t = time.perf_counter()
        synthesize_archive(
            paths[key], ["mc-like"], n_images * factor, seed=2, matrix=matrix, progress=False
        )
        echo(
            f"  built {key}: {n_images * factor} images of {matrix}px in "
            f"{time.perf_counter() - t:.1f} s"
        )
    return paths


def _timed_run(
    paths: dict[str, str], source: str, out: str, method: str, executor: Executor
) -> tuple[float, int, int]:
    """(seconds, ok rows, peak PSS bytes) of one run into a fresh output prefix."""
    shutil.rmtree(out, ignore_errors=True)
    with PeakMemory() as mem:
        start = time.perf_counter()
        summary = run_harmonization(
            input_uri=paths[source],
            out_uri=out,
            method=method,
            model_uri=paths["model"],
            executor=executor,
            options=RunOptions(progress=False),
        )
        seconds = time.perf_counter() - start
    return seconds, summary.counts.get("ok", 0), mem.peak


def run_run_benchmark(
    executors: ExecutorFactory,
    method: str = "histogram",
    n_images: int = 32,
    matrix: int = 1024,
    workdir: str | None = None,
    echo: Callable[[str], Any] = print,
) -> dict:
    """Print and return throughput (stream vs loop) and peak memory (archive vs 4x archive);
    ``executors`` makes the ``ray`` (stream) and ``local`` (loop) executors."""
    stream, loop = executors("ray"), executors("local")
    owned = workdir is None
    base = Path(workdir or tempfile.mkdtemp(prefix="harmonize-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    echo(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, python {platform.python_version()}"
    )
    try:
        paths = _build(base, n_images, matrix, method, echo)
        t = time.perf_counter()
        with stream, loop:  # stops on exit only a Ray session it started
            echo(f"  ray start-up: {time.perf_counter() - t:.1f} s (not in the timings below)")
            # Warm-up: the first Ray Data run starts worker processes and imports torch in them.
            _timed_run(paths, "source-x1", str(base / "out-warmup"), method, stream)
            rows: list[dict[str, Any]] = []
            for size in ("source-x1", "source-x4"):
                loop_s, loop_ok, _ = _timed_run(
                    paths, size, str(base / f"loop-{size}"), method, loop
                )
                stream_s, stream_ok, peak = _timed_run(
                    paths, size, str(base / f"stream-{size}"), method, stream
                )
                rows.append(
                    {
                        "archive": size,
                        "images": stream_ok,
                        "loop_images_per_s": loop_ok / loop_s,
                        "stream_images_per_s": stream_ok / stream_s,
                        "speedup": (stream_ok / stream_s) / (loop_ok / loop_s),
                        "stream_peak_pss_mib": peak / 2**20,
                    }
                )
    finally:
        if owned:
            shutil.rmtree(base, ignore_errors=True)
    growth = 100.0 * (rows[1]["stream_peak_pss_mib"] / rows[0]["stream_peak_pss_mib"] - 1.0)
    result = {"method": method, "matrix": matrix, "rows": rows, "memory_growth_pct": growth}
    echo(f"\nbench run --method {method}: {matrix}x{matrix} px images, {os.cpu_count()} cores")
    echo(
        "| archive | images | loop images/s | stream images/s | stream / loop | "
        "stream peak memory (PSS, MiB) |"
    )
    echo("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        echo(
            f"| {r['archive']} | {r['images']} | {r['loop_images_per_s']:.2f} | "
            f"{r['stream_images_per_s']:.2f} | {r['speedup']:.2f}x | "
            f"{r['stream_peak_pss_mib']:.0f} |"
        )
    echo("stream / loop target: >= 1.5x")
    echo(f"peak memory growth for 4x the images: {growth:+.1f}% (target < 15%)")
    return result


def run_mode_benchmark(
    executors: ExecutorFactory,
    method: str = "cyclegan",
    model_uri: str | None = None,
    n_images: int = 8,
    matrix: int = 2048,
    workdir: str | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Streaming throughput of a neural method in ``curve``, ``local`` and ``direct`` mode on
    the same full-resolution archive (uncompressed DICOM, so the codec weighs little). Without
    ``model_uri`` the default architecture with its initial weights is used: speed does not
    depend on training. ``executors`` makes the ``ray`` executor (the stream)."""
    import torch

    from harmonize.models.files import write_network
    from harmonize.synth import synthesize_archive

    owned = workdir is None
    base = Path(workdir or tempfile.mkdtemp(prefix="harmonize-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    echo(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.cuda.get_device_name() if cuda else 'no GPU'}"
    )
    try:
        source = str(base / "source")
        synthesize_archive(
            source, ["portable-like"], n_images, seed=3, matrix=matrix, progress=False
        )
        if model_uri is None:  # the method's default architecture, initial weights
            from harmonize.models.registry import gan_parts

            model_uri = str(base / "model")
            recipe = gan_parts(method).recipe({}, steps=1, device=torch.device("cpu"), seed=0)
            write_network(
                model_uri,
                method,
                {**recipe.model_config(), "load_size": 286},
                recipe.generator_state(),
                card={"note": "untrained weights, for speed benchmarks only"},
            )
        rows: list[dict[str, Any]] = []
        with executors("ray") as stream:  # stops on exit only a Ray session it started
            for mode in ("curve", "local", "direct"):
                run_harmonization(
                    input_uri=source,
                    out_uri=str(base / "warmup"),
                    method=method,
                    model_uri=model_uri,
                    executor=stream,
                    mode=mode,
                    options=RunOptions(progress=False, limit=1),
                )
                with PeakMemory() as mem:
                    start = time.perf_counter()
                    summary = run_harmonization(
                        input_uri=source,
                        out_uri=str(base / f"out-{mode}"),
                        method=method,
                        model_uri=model_uri,
                        executor=stream,
                        mode=mode,
                        options=RunOptions(progress=False),
                    )
                    seconds = time.perf_counter() - start
                ok = summary.counts.get("ok", 0)
                if ok != n_images:  # a rate over failed rows would measure nothing
                    raise HarmonizeError(
                        f"bench run: {mode} mode harmonized {ok} of {n_images} images "
                        f"({dict(summary.counts)}); the manifest's error column says why"
                    )
                rows.append(
                    {
                        "mode": mode,
                        "images": ok,
                        "seconds": seconds,
                        "images_per_s": ok / seconds,
                        "peak_pss_mib": mem.peak / 2**20,
                    }
                )
    finally:
        if owned:
            shutil.rmtree(base, ignore_errors=True)
    rate = {r["mode"]: r["images_per_s"] for r in rows}
    ratio = rate["curve"] / rate["direct"]
    echo(
        f"\nbench run --method {method}: {n_images} images of {matrix}x{matrix} px, streaming "
        "(Ray Data), full resolution"
    )
    echo("| mode | images | seconds | images/s | peak memory (PSS, MiB) |")
    echo("|---|---:|---:|---:|---:|")
    for r in rows:
        echo(
            f"| {r['mode']} | {r['images']} | {r['seconds']:.1f} | {r['images_per_s']:.2f} | "
            f"{r['peak_pss_mib']:.0f} |"
        )
    echo(
        f"curve / direct: {ratio:.1f}x, local / direct: {rate['local'] / rate['direct']:.1f}x "
        "(target on one H100: curve >= 300 images/s at 2048 px)"
    )
    return {
        "method": method,
        "matrix": matrix,
        "rows": rows,
        "curve_over_direct": ratio,
        "local_over_direct": rate["local"] / rate["direct"],
    }
