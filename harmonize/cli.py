"""The `harmonize` command line: parse and validate, call one function, print a clear result.

Heavy libraries are imported inside each command so that `harmonize --help` is instant. User
mistakes (bad URIs, bad configs, unreadable inputs) exit with status 2 and a one-line reason.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from harmonize.errors import HarmonizeError

URI = click.STRING  # a local path or s3://bucket/prefix


def _storage(ctx: click.Context) -> Any:
    from harmonize.storage import Storage

    return Storage(endpoint_url=ctx.obj["s3_endpoint"])


def _load_yaml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise HarmonizeError(f'cannot read config "{path}": {err}') from err
    if not isinstance(data, dict):
        raise HarmonizeError(f'config "{path}" must be a YAML mapping of option: value')
    return data


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--s3-endpoint",
    envvar="AWS_ENDPOINT_URL",
    default=None,
    help="S3-compatible endpoint for s3:// URIs (default: $AWS_ENDPOINT_URL, else AWS).",
)
@click.version_option(package_name="harmonize")
@click.pass_context
def cli(ctx: click.Context, s3_endpoint: str | None) -> None:
    """Harmonize the intensity distribution of radiographs across sites, at archive scale."""
    ctx.ensure_object(dict)
    ctx.obj["s3_endpoint"] = s3_endpoint


# -- synth ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("out", type=URI)
@click.option("--site", "sites", multiple=True, help="Site profile name or YAML path (repeat).")
@click.option("--n-per-site", type=click.IntRange(1), default=16, help="Images per site.")
@click.option("--seed", type=int, default=0, help="Random seed (same seed, same archive).")
@click.option(
    "--matrix",
    type=click.IntRange(64),
    default=None,
    help="Override the profiles' image size in pixels (fast demos and tests).",
)
@click.option(
    "--from-png",
    "from_png",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Wrap the real PNGs in this folder as DICOM under --site.",
)
@click.option("--progress/--no-progress", default=True)
@click.pass_context
def synth(
    ctx: click.Context,
    out: str,
    sites: tuple[str, ...],
    n_per_site: int,
    seed: int,
    matrix: int | None,
    from_png: str | None,
    progress: bool,
) -> None:
    """Write a synthetic multi-site chest radiograph archive (DICOM + labels) to OUT."""
    from harmonize import synth as synth_mod

    storage = _storage(ctx)
    if from_png:
        if len(sites) != 1:
            raise click.UsageError("--from-png needs exactly one --site (the profile to wrap with)")
        table = synth_mod.wrap_pngs(from_png, out, sites[0], storage=storage, matrix=matrix)
    else:
        chosen = list(sites) or ["shenzhen-like", "mc-like"]
        table = synth_mod.synthesize_archive(
            out, chosen, n_per_site, seed, storage=storage, matrix=matrix, progress=progress
        )
    counts = table.groupby("site").size().to_dict()
    click.echo(f"wrote {len(table)} images to {out} ({counts}); labels: {out}/labels.parquet")


# -- train ---------------------------------------------------------------------------------------
@cli.group()
def train() -> None:
    """Fit or train a harmonization method (or the target-site classifier)."""


def _classical_train_command(method: str, summary: str) -> None:
    @train.command(name=method, help=summary)
    @click.option("--target", required=True, type=URI, help="Target-site archive to learn from.")
    @click.option(
        "--source",
        type=URI,
        default=None,
        help="Not needed by this method (accepted for a uniform command line).",
    )
    @click.option("--out", required=True, type=URI, help="Where to save the fitted model.")
    @click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="YAML file with method options.",
    )
    @click.option(
        "--workers",
        type=click.IntRange(1),
        default=None,
        help="Decode processes (default: all cores).",
    )
    @click.option("--progress/--no-progress", default=True)
    @click.pass_context
    def command(
        ctx: click.Context,
        target: str,
        source: str | None,
        out: str,
        config: str | None,
        workers: int | None,
        progress: bool,
    ) -> None:
        from harmonize.fitting import fit_classical

        result = fit_classical(
            method,
            target,
            out,
            config=_load_yaml(config),
            storage=_storage(ctx),
            workers=workers,
            progress=progress,
        )
        card = result.card
        click.echo(
            f"fitted {method} on {card['n_images']} target images "
            f"({card['n_unreadable']} unreadable) in {card['fit_seconds']:.1f} s; "
            f"model: {result.model_uri}"
        )


_classical_train_command("histogram", "Fit histogram matching to a target-site reference.")
_classical_train_command("nyul", "Fit Nyúl piecewise-linear standardization to the target site.")


# -- run -----------------------------------------------------------------------------------------
@cli.command()
@click.option("--method", required=True, help="Harmonization method of the model.")
@click.option("--model", "model_uri", required=True, type=URI, help="Fitted model URI.")
@click.option("--input", "input_uri", required=True, type=URI, help="Archive to harmonize.")
@click.option("--out", "out_uri", required=True, type=URI, help="Output prefix.")
@click.option(
    "--labels",
    "labels_uri",
    type=URI,
    default=None,
    help="Labels table (image_id, site, label) to join into the manifest.",
)
@click.option("--classifier", type=URI, default=None, help="Target-site classifier (scores).")
@click.option(
    "--mode",
    type=click.Choice(["direct", "curve"]),
    default="direct",
    help="direct: model output; curve: monotone intensity curve (neural methods).",
)
@click.option(
    "--executor",
    type=click.Choice(["ray", "local"]),
    default="ray",
    help="ray: Ray Data stream (local Ray without --address); local: one process.",
)
@click.option("--address", default=None, help="Ray cluster address (default: local Ray).")
@click.option(
    "--actors",
    type=click.IntRange(1),
    default=None,
    help="Harmonizer actor-pool size (default: one per GPU; CPU tasks without GPUs).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=8,
    help="Images per Ray Data block and per harmonizer call.",
)
@click.option(
    "--suffix",
    "suffixes",
    multiple=True,
    default=(".dcm", ".dicom"),
    help="Input object name endings to take ('' takes every object).",
)
@click.option("--run-id", default=None, help="Run id (default: UTC time + random).")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N objects.")
@click.option("--progress/--no-progress", default=True)
@click.pass_context
def run(
    ctx: click.Context,
    method: str,
    model_uri: str,
    input_uri: str,
    out_uri: str,
    labels_uri: str | None,
    classifier: str | None,
    mode: str,
    executor: str,
    address: str | None,
    actors: int,
    batch_size: int,
    suffixes: tuple[str, ...],
    run_id: str | None,
    limit: int | None,
    progress: bool,
) -> None:
    """Harmonize an archive: derived DICOM under OUT/images/, manifest under OUT/manifest/."""
    from harmonize.methods import method_names
    from harmonize.run import RunOptions, run_harmonization

    if method not in method_names():
        raise click.BadParameter(
            f'"{method}" is not one of {method_names()}', param_hint="--method"
        )
    if classifier:
        raise HarmonizeError("--classifier scoring is not available yet in this version")
    options = RunOptions(
        executor=executor,
        ray_address=address,
        actors=actors,
        batch_size=batch_size,
        suffixes=tuple(s for s in suffixes if s),
        labels_uri=labels_uri,
        run_id=run_id,
        progress=progress,
        limit=limit,
    )
    summary = run_harmonization(
        input_uri=input_uri,
        out_uri=out_uri,
        method=method,
        model_uri=model_uri,
        mode=mode,
        storage=_storage(ctx),
        options=options,
    )
    click.echo(summary.line())


# -- report --------------------------------------------------------------------------------------
@cli.command()
@click.argument("manifests", nargs=-1, required=True, type=URI)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for report.html and the PNG figures.",
)
@click.pass_context
def report(ctx: click.Context, manifests: tuple[str, ...], out_dir: str) -> None:
    """Tables and figures from one or more run manifests (Markdown on stdout, HTML in --out)."""
    from harmonize.report import build_report

    result = build_report(list(manifests), out_dir, storage=_storage(ctx))
    click.echo(result.markdown)
    click.echo(f"\nreport: {result.html_path}", err=True)


# -- demo ----------------------------------------------------------------------------------------
@cli.command()
@click.argument("out_dir", required=False, default="demo-out", type=click.Path(file_okay=False))
@click.option("--n-per-site", type=click.IntRange(2), default=24)
@click.option("--matrix", type=click.IntRange(64), default=1024)
@click.option("--executor", type=click.Choice(["ray", "local"]), default="ray")
@click.pass_context
def demo(ctx: click.Context, out_dir: str, n_per_site: int, matrix: int, executor: str) -> None:
    """The whole product on a small synthetic two-site archive: synth → fit → run → report."""
    from harmonize.demo import run_demo

    result = run_demo(
        out_dir,
        n_per_site=n_per_site,
        matrix=matrix,
        executor=executor,
        storage=_storage(ctx),
        echo=click.echo,
    )
    click.echo(f"\nopen the report: {result}")


# -- bench ---------------------------------------------------------------------------------------
@cli.group()
def bench() -> None:
    """Benchmarks that print ratios measured side by side in one run."""


@bench.command(name="ssim")
@click.option("--sizes", default="512,1024,2048", help="Comma-separated image sizes.")
@click.option("--n-images", type=click.IntRange(1), default=8)
@click.option("--repeats", type=click.IntRange(1), default=3)
def bench_ssim(sizes: str, n_images: int, repeats: int) -> None:
    """Our batched torch SSIM against scikit-image on the same images."""
    from harmonize.benchmarks.ssim import run_ssim_benchmark

    run_ssim_benchmark(
        sizes=tuple(int(s) for s in sizes.split(",")),
        n_images=n_images,
        repeats=repeats,
        echo=click.echo,
    )


@bench.command(name="run")
@click.option("--method", type=click.Choice(["histogram", "nyul"]), default="histogram")
@click.option(
    "--n-images",
    type=click.IntRange(2),
    default=32,
    help="Images in the small archive (the large one has 4x).",
)
@click.option("--matrix", type=click.IntRange(64), default=2048, help="Image size in pixels.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to build the archives (default: a temporary folder).",
)
def bench_run(method: str, n_images: int, matrix: int, workdir: str | None) -> None:
    """Streaming run (Ray Data) against a sequential loop on the same archive, plus peak memory
    for that archive and one 4x larger."""
    from harmonize.benchmarks.run import run_run_benchmark

    run_run_benchmark(
        method=method, n_images=n_images, matrix=matrix, workdir=workdir, echo=click.echo
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 on success, 2 with a one-line reason on bad usage or input."""
    try:
        cli.main(args=argv, prog_name="harmonize", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        exc.show()
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"harmonize: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except HarmonizeError as exc:
        click.echo(f"harmonize: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
