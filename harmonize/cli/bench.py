"""`harmonize bench ssim|run|train|train-data|device`: benchmarks printing ratios measured side by
side."""

from __future__ import annotations

from typing import Any

import click

from harmonize.cli.common import METHOD_CHOICE, URI, LocalPath, PositiveInts
from harmonize.models.registry import METHODS, NEURAL

WORKDIR = click.option(
    "--workdir",
    type=LocalPath(file_okay=False),
    help="Where to build the archives [default: a temporary folder].",
)


@click.group()
def bench() -> None:
    """Benchmarks that print ratios measured side by side in one run."""


@bench.command(name="ssim")
@click.option(
    "--sizes",
    type=PositiveInts(),
    default="512,1024,2048",
    help="Image sides (px), comma-separated.",
)
@click.option("--n-images", type=click.IntRange(1), default=8, help="Images per size.")
@click.option(
    "--repeats",
    type=click.IntRange(1),
    default=3,
    help="Timed runs after a warm-up (the median counts).",
)
def bench_ssim(sizes: tuple[int, ...], n_images: int, repeats: int) -> None:
    """Our batched torch SSIM against scikit-image on the same images."""
    from harmonize.benchmarks.ssim import run_ssim_benchmark

    run_ssim_benchmark(sizes=sizes, n_images=n_images, repeats=repeats, echo=click.echo)


@bench.command(name="run")
@click.option(
    "--method",
    type=METHOD_CHOICE,
    default="histogram",
    help="Classical: stream vs sequential loop + memory; neural: curve vs direct.",
)
@click.option("--model", "model_uri", type=URI, help="Neural: its model [default: untrained].")
@click.option("--n-images", type=click.IntRange(2), help="Images [default: 32; neural: 8].")
@click.option("--matrix", type=click.IntRange(64), default=2048, help="Image size in pixels.")
@WORKDIR
def bench_run(
    method: str, model_uri: str | None, n_images: int | None, matrix: int, workdir: str | None
) -> None:
    """Throughput of the streaming run: against a sequential loop on the same archive with
    peak memory for that archive and one 4x larger (classical methods), or curve against direct
    mode at full resolution (neural methods)."""
    from harmonize.benchmarks.run import run_mode_benchmark, run_run_benchmark
    from harmonize.distributed.stream import make_executor

    common: dict[str, Any] = {
        "method": method,
        "matrix": matrix,
        "workdir": workdir,
        "echo": click.echo,
    }
    if METHODS[method].kind == NEURAL:
        run_mode_benchmark(make_executor, model_uri=model_uri, n_images=n_images or 8, **common)
    else:
        run_run_benchmark(make_executor, n_images=n_images or 32, **common)


@bench.command(name="train")
@click.option(
    "--method",
    type=click.Choice([m for m, e in METHODS.items() if e.kind == NEURAL]),
    default="cyclegan",
    show_default=True,
    help="The GAN to time; another than cyclegan is also compared with CycleGAN.",
)
@click.option("--crop-size", type=click.IntRange(16), help="Crop [default: GPU 256, CPU 128].")
@click.option("--batch-size", type=click.IntRange(1), help="Tuned batch [default: GPU 8, CPU 4].")
@click.option("--steps", type=click.IntRange(1), default=5, help="Timed steps per configuration.")
@click.option(
    "--compile/--no-compile",
    default=None,
    help="torch.compile in the tuned configuration [default: on a GPU only].",
)
def bench_train(
    method: str,
    crop_size: int | None,
    batch_size: int | None,
    steps: int,
    compile: bool | None,
) -> None:
    """GAN training throughput and peak memory: the tuned configuration against the reference
    recipe (same architecture, batch 1, fp32, eager), each in a fresh process; for CUT or UNIT
    also CycleGAN at the same size, with the ratios."""
    from harmonize.benchmarks.train import run_train_benchmark

    run_train_benchmark(
        method=method,
        crop_size=crop_size,
        batch_size=batch_size,
        steps=steps,
        compile=compile,
        echo=click.echo,
    )


@bench.command(name="train-data")
@click.option("--n-images", type=click.IntRange(1), default=32, help="Images per site (x1).")
@click.option("--matrix", type=click.IntRange(64), default=512, help="Archive image size (px).")
@click.option("--load-size", type=click.IntRange(16), default=256, help="Training short side.")
@click.option("--crop-size", type=click.IntRange(16), default=128, help="Training crop (px).")
@click.option("--steps", type=click.IntRange(1), default=20, help="Training steps per run.")
@WORKDIR
def bench_train_data(
    n_images: int, matrix: int, load_size: int, crop_size: int, steps: int, workdir: str | None
) -> None:
    """Training data: preparation as Ray tasks into shards against one process, the driver's
    and a worker's peak memory for an archive and one 4x larger, and training steps/s from
    shards against memory."""
    from harmonize.benchmarks.train_data import run_train_data_benchmark
    from harmonize.distributed.session import init_ray
    from harmonize.distributed.shards import ray_tasks
    from harmonize.distributed.train import train_distributed

    run_train_data_benchmark(
        init_ray,
        ray_tasks,
        train_distributed,
        n_images=n_images,
        matrix=matrix,
        load_size=load_size,
        crop_size=crop_size,
        steps=steps,
        workdir=workdir,
        echo=click.echo,
    )


@bench.command(name="device")
@click.option("--smoke", is_flag=True, help="Tiny sizes: checks that it runs, on a CPU too.")
@click.option(
    "--out",
    "out_dir",
    type=LocalPath(file_okay=False),
    default="device-bench",
    show_default=True,
    help="Where device-bench.json and device-bench.md go.",
)
@click.option(
    "--sections",
    default="training,streaming,ssim,decode,checks",
    show_default=True,
    help="Comma-separated sections to run.",
)
@WORKDIR
def bench_device(smoke: bool, out_dir: str, sections: str, workdir: str | None) -> None:
    """The prepared GPU benchmark, without Ray: training (reference vs tuned, every GAN),
    streaming (local executor, curve vs direct), SSIM (device vs scikit-image) and decode
    (nvImageCodec vs pylibjpeg-openjpeg on one core) and checks (the GPU-only tests, by
    pytest), each within its own time budget (under 8 minutes in all); writes
    OUT/device-bench.json and OUT/device-bench.md."""
    from harmonize.benchmarks.device import run_device_benchmark

    run_device_benchmark(
        out_dir,
        smoke=smoke,
        sections=[s.strip() for s in sections.split(",") if s.strip()],
        workdir=workdir,
        echo=click.echo,
    )
