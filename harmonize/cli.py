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
from harmonize.io.archive import DICOM_SUFFIXES

URI = click.STRING  # a local path or s3://bucket/prefix


def _storage(ctx: click.Context) -> Any:
    from harmonize.io.storage import Storage

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
        from harmonize.methods.fit import fit_classical

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


def _ray_train_options(function: Any) -> Any:
    """The options of every Ray Train command: where it trains, how long, resume, progress."""
    options = [
        click.option(
            "--gpus",
            type=click.IntRange(0),
            default=0,
            help="GPUs to train on: one Ray Train worker (DDP rank) per GPU.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1),
            default=None,
            help="CPU workers (DDP over gloo) when --gpus is 0 [default: 1].",
        ),
        click.option("--steps", type=click.IntRange(1), default=None, help="Override the steps."),
        click.option("--address", default=None, help="Ray cluster address (default: local Ray)."),
        click.option(
            "--resume/--no-resume",
            default=True,
            help="Continue from the latest checkpoint under --out; --no-resume deletes "
            "OUT/checkpoints/ and starts from step 0.",
        ),
        click.option("--progress/--no-progress", default=True),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _neural_train_command(method: str, summary: str) -> None:
    @train.command(name=method, help=summary)
    @click.option("--source", required=True, type=URI, help="Source-site archive (look to change).")
    @click.option("--target", required=True, type=URI, help="Target-site archive (look to learn).")
    @click.option(
        "--out", required=True, type=URI, help="Output prefix: model, checkpoints/, cache/."
    )
    @click.option(
        "--config",
        "config_path",
        type=URI,
        default=None,
        help="YAML training config, local or s3:// (example: jobs/configs/cyclegan.yaml).",
    )
    @click.option(
        "--crop-size", type=click.IntRange(8), default=None, help="Override the crop size (px)."
    )
    @_ray_train_options
    @click.pass_context
    def command(
        ctx: click.Context,
        source: str,
        target: str,
        out: str,
        config_path: str | None,
        gpus: int,
        workers: int | None,
        steps: int | None,
        crop_size: int | None,
        address: str | None,
        resume: bool,
        progress: bool,
    ) -> None:
        from harmonize.distributed.train import train_distributed
        from harmonize.training.config import load_train_config
        from harmonize.training.job import gan_job

        storage = _storage(ctx)
        config = load_train_config(
            config_path, storage, method=method, steps=steps, crop_size=crop_size
        )
        summary = train_distributed(
            gan_job(config, source, target),
            out,
            gpus=gpus,
            workers=workers,
            storage=storage,
            ray_address=address,
            resume=resume,
            progress=progress,
        )
        losses = ", ".join(f"{k} {v:.4f}" for k, v in sorted(summary["losses"].items()))
        resumed = f", resumed from step {summary['start_step']}" if summary["start_step"] else ""
        click.echo(
            f"trained {method} to step {summary['steps']} on {summary['workers']} worker(s) "
            f"({'GPU' if gpus else 'CPU'}{resumed}) in {summary['seconds']:.1f} s; "
            f"final losses: {losses or 'none reported'}"
        )
        click.echo(f"model: {summary['model_uri']}")


_neural_train_command("cyclegan", "Train CycleGAN (source -> target) with Ray Train.")
_neural_train_command("unit", "Train UNIT (shared-latent VAE-GAN) with Ray Train.")


@train.command(name="classifier")
@click.option("--archive", required=True, type=URI, help="Target-site archive (DICOM) to learn.")
@click.option(
    "--labels",
    "labels_uri",
    required=True,
    type=URI,
    help="Labels table (Parquet or .csv; image_id = SOPInstanceUID, label), e.g. the "
    "labels.parquet that `harmonize synth` writes.",
)
@click.option(
    "--out", required=True, type=URI, help="Output prefix: classifier.json, checkpoints/, cache/."
)
@click.option(
    "--config",
    "config_path",
    type=URI,
    default=None,
    help="YAML classifier config, local or s3:// (example: jobs/configs/classifier.yaml).",
)
@_ray_train_options
@click.pass_context
def train_classifier_command(
    ctx: click.Context,
    archive: str,
    labels_uri: str,
    out: str,
    config_path: str | None,
    gpus: int,
    workers: int | None,
    steps: int | None,
    address: str | None,
    resume: bool,
    progress: bool,
) -> None:
    """Train the target-site classifier (finding / no finding) with Ray Train."""
    from harmonize.classifier.config import load_classifier_config
    from harmonize.distributed.train import train_distributed
    from harmonize.training.job import classifier_job

    storage = _storage(ctx)
    config = load_classifier_config(config_path, storage, steps=steps)
    summary = train_distributed(
        classifier_job(config, archive, labels_uri),
        out,
        gpus=gpus,
        workers=workers,
        storage=storage,
        ray_address=address,
        resume=resume,
        progress=progress,
    )
    resumed = f", resumed from step {summary['start_step']}" if summary["start_step"] else ""
    loss = summary["losses"].get("loss")
    click.echo(
        f"trained the classifier to step {summary['steps']} on {summary['workers']} worker(s) "
        f"({'GPU' if gpus else 'CPU'}{resumed}) in {summary['seconds']:.1f} s; final loss "
        + (f"{loss:.4f}" if loss is not None else "none reported")
    )
    val, n_train = summary["validation"], sum(summary["n_images"]["train"].values())
    click.echo(
        f"validation AUC {val['auc']:.3f} on {val['n']} held-out images ({val['finding']} with a "
        f"finding, {val['no_finding']} without; {n_train} used for training)"
    )
    click.echo(f"model: {summary['model_uri']}")


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
@click.option(
    "--classifier",
    type=URI,
    default=None,
    help="Target-site classifier (harmonize train classifier): adds score_in / score_out.",
)
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
    default=DICOM_SUFFIXES,
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
    """Harmonize an archive: derived DICOM under OUT/images/, manifest under OUT/manifest/.

    \b
    Exit status:
      0  every listed object ended ok or skipped
      1  the run could not finish; the manifest holds the parts committed so far
      2  bad usage or input, found before any row was written
      3  some objects ended as error rows (every row written, the others done)
      4  no object ended ok or skipped (every row written, all errors)
    """
    from harmonize.distributed.stream import make_executor
    from harmonize.models.registry import method_names
    from harmonize.run.orchestrate import run_harmonization
    from harmonize.run.spec import ExitCode, RunIncomplete, RunOptions

    if method not in method_names():
        raise click.BadParameter(
            f'"{method}" is not one of {method_names()}', param_hint="--method"
        )
    runner = make_executor(executor, address=address, actors=actors, batch_size=batch_size)
    options = RunOptions(
        suffixes=tuple(s for s in suffixes if s),
        labels_uri=labels_uri,
        run_id=run_id,
        progress=progress,
        limit=limit,
    )
    try:
        summary = run_harmonization(
            input_uri=input_uri,
            out_uri=out_uri,
            method=method,
            model_uri=model_uri,
            executor=runner,
            mode=mode,
            classifier_uri=classifier,
            storage=_storage(ctx),
            options=options,
        )
    except RunIncomplete as err:
        click.echo(f"harmonize: error: {err}", err=True)
        ctx.exit(ExitCode.INCOMPLETE)
    click.echo(summary.line())
    ctx.exit(summary.exit_code)


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
@click.option(
    "--target-site",
    default=None,
    help="The target site's name in the manifests' site column: its images give the in-domain "
    "AUC and the fallback target histogram, and are left out of the method tables.",
)
@click.pass_context
def report(
    ctx: click.Context, manifests: tuple[str, ...], out_dir: str, target_site: str | None
) -> None:
    """Tables and figures from one or more run manifests (Markdown on stdout, HTML in --out)."""
    from harmonize.report import build_report

    result = build_report(list(manifests), out_dir, storage=_storage(ctx), target_site=target_site)
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
    from harmonize.distributed.stream import make_executor

    result = run_demo(
        out_dir,
        n_per_site=n_per_site,
        matrix=matrix,
        executor=make_executor(executor),
        storage=_storage(ctx),
        echo=click.echo,
    )
    click.echo(f"\nopen the report: {result}")


# -- experiment ----------------------------------------------------------------------------------
@cli.command()
@click.option("--out", "out_uri", required=True, type=URI, help="Output folder or s3:// prefix.")
@click.option("--quick", is_flag=True, help="A minute-sized run of every step (CI).")
@click.option("--n-train", type=click.IntRange(4), default=None, help="Training images per site.")
@click.option("--n-test", type=click.IntRange(4), default=None, help="Test images per site.")
@click.option("--matrix", type=click.IntRange(64, 8192), default=None, help="Image side (px).")
@click.option("--seed", type=int, default=None, help="Training archive seed (test: seed + 1).")
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(["histogram", "nyul", "cyclegan", "unit"]),
    help="Methods to compare (repeat; default: all).",
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(["curve", "direct"]),
    help="Output modes of the neural methods (repeat; default: both, --quick: curve).",
)
@click.option("--gan-steps", type=click.IntRange(1), default=None, help="GAN training steps.")
@click.option(
    "--gan-config",
    "gan_configs",
    multiple=True,
    metavar="METHOD=YAML",
    help="A GAN's training config (repeat; default: jobs/configs/<method>-cpu-quick.yaml).",
)
@click.option(
    "--classifier-steps", type=click.IntRange(1), default=None, help="Classifier training steps."
)
@click.option(
    "--classifier-config", type=URI, default=None, help="Classifier training config (YAML)."
)
@click.option(
    "--lesion-strength",
    type=click.FloatRange(0),
    default=None,
    help="Strength of the synthetic findings (the benchmark's difficulty).",
)
@click.option(
    "--executor",
    type=click.Choice(["ray", "local"]),
    default=None,
    help="Runs on local Ray Data (default) or in one process.",
)
@click.option("--progress/--no-progress", default=False)
@click.pass_context
def experiment(ctx: click.Context, out_uri: str, quick: bool, progress: bool, **flags: Any) -> None:
    """The paper's benchmark end to end: synth, classifier, every method, runs, report."""
    from harmonize.distributed.stream import make_executor
    from harmonize.experiment import ExperimentConfig, run_experiment

    overrides = {k: v for k, v in flags.items() if v is not None and v != ()}
    if "gan_configs" in overrides:
        pairs = [item.partition("=") for item in overrides["gan_configs"]]
        if any(not sep or not path for _, sep, path in pairs):
            raise click.BadParameter("write METHOD=YAML", param_hint="--gan-config")
        overrides["gan_configs"] = tuple((method, path) for method, _, path in pairs)
    for key in ("methods", "modes"):
        if key in overrides:
            overrides[key] = tuple(dict.fromkeys(overrides[key]))
    config = ExperimentConfig.quick(**overrides) if quick else ExperimentConfig(**overrides)
    result = run_experiment(
        config,
        out_uri,
        executors=make_executor,
        storage=_storage(ctx),
        echo=click.echo,
        progress=progress,
    )
    click.echo("")
    click.echo(result.report.markdown)
    click.echo(f"open the report: {result.report.html_path}")


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
@click.option(
    "--method",
    type=click.Choice(["histogram", "nyul", "cyclegan", "unit"]),
    default="histogram",
    help="histogram/nyul: stream vs sequential loop + memory; cyclegan/unit: curve vs direct.",
)
@click.option(
    "--model",
    "model_uri",
    type=URI,
    default=None,
    help="cyclegan/unit: a trained model (default: the architecture, untrained weights).",
)
@click.option(
    "--n-images",
    type=click.IntRange(2),
    default=None,
    help="Images per archive (histogram/nyul: 32, and a 4x archive; cyclegan/unit: 8).",
)
@click.option("--matrix", type=click.IntRange(64), default=2048, help="Image size in pixels.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to build the archives (default: a temporary folder).",
)
def bench_run(
    method: str, model_uri: str | None, n_images: int | None, matrix: int, workdir: str | None
) -> None:
    """Throughput of the streaming run: against a sequential loop on the same archive with
    peak memory for that archive and one 4x larger (classical methods), or curve against direct
    mode at full resolution (neural methods)."""
    from harmonize.benchmarks.run import run_mode_benchmark, run_run_benchmark
    from harmonize.distributed.stream import make_executor

    if method in ("cyclegan", "unit"):
        run_mode_benchmark(
            make_executor,
            method=method,
            model_uri=model_uri,
            n_images=n_images or 8,
            matrix=matrix,
            workdir=workdir,
            echo=click.echo,
        )
    else:
        run_run_benchmark(
            make_executor,
            method=method,
            n_images=n_images or 32,
            matrix=matrix,
            workdir=workdir,
            echo=click.echo,
        )


@bench.command(name="train")
@click.option(
    "--crop-size",
    type=click.IntRange(16),
    default=None,
    help="Training crop (default: 256 on a GPU, 128 on CPU).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=None,
    help="The tuned configuration's batch (default: 8 on a GPU, 4 on CPU).",
)
@click.option("--steps", type=click.IntRange(1), default=5, help="Timed steps per configuration.")
@click.option(
    "--compile/--no-compile",
    default=None,
    help="torch.compile in the tuned configuration (default: on a GPU only).",
)
def bench_train(
    crop_size: int | None, batch_size: int | None, steps: int, compile: bool | None
) -> None:
    """CycleGAN training throughput: the tuned configuration against the reference recipe
    (same architecture, batch 1, fp32, eager), in one process."""
    from harmonize.benchmarks.train import run_train_benchmark

    run_train_benchmark(
        crop_size=crop_size, batch_size=batch_size, steps=steps, compile=compile, echo=click.echo
    )


# -- submit --------------------------------------------------------------------------------------
@cli.group()
def submit() -> None:
    """Run train / run / report on a Ray cluster as a Ray Job (local Ray without --address)."""


def _address_option(function: Any) -> Any:
    """--address of submit: where the job goes."""
    return click.option(
        "--address",
        default=None,
        help="The cluster's Jobs API, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, else "
        "harmonize's own local Ray head, started when it does not run; never another Ray "
        "found on a default port).",
    )(function)


def _job_address_option(function: Any) -> Any:
    """--address of status / logs / stop: where the job is (nothing is started)."""
    return click.option(
        "--address",
        default=None,
        help="The cluster's Jobs API, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, else "
        "the local Ray head that `harmonize submit` started; none is started).",
    )(function)


def _submit_command(name: str) -> None:
    @submit.command(
        name=name,
        context_settings={"ignore_unknown_options": True},
        help=f"Submit `harmonize {name} ARGS...` as a Ray Job; prints the job id. ARGS pass "
        "through unchanged; after `--`, even options named like these (--help, --address).",
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @_address_option
    @click.option(
        "--gpus",
        type=click.IntRange(0),
        default=None,
        help="train: its --gpus (one worker per GPU); run: its --actors (one harmonizer per GPU).",
    )
    @click.option("--follow", is_flag=True, help="Stream the logs until the job ends.")
    @click.option(
        "--working-dir",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="Ship this harmonize checkout to the cluster (dev clusters; .venv and data left out).",
    )
    @click.option(
        "--aws-env/--no-aws-env",
        default=True,
        help="Pass this shell's AWS_* variables (S3 credentials, endpoint) to the job.",
    )
    @click.pass_context
    def command(
        ctx: click.Context,
        args: tuple[str, ...],
        address: str | None,
        gpus: int | None,
        follow: bool,
        working_dir: str | None,
        aws_env: bool,
    ) -> None:
        from harmonize.distributed import jobs

        inner = list(args)
        if gpus is not None:
            if name == "report":
                raise click.UsageError("report uses no GPU; drop --gpus")
            flag = "--gpus" if name == "train" else "--actors"
            if any(a == flag or a.startswith(f"{flag}=") for a in inner):
                raise click.UsageError(f"give the GPU count once (--gpus), not also {flag}")
            if gpus or name == "train":
                inner += [flag, str(gpus)]
        env = jobs.aws_env() if aws_env else {}
        if ctx.obj["s3_endpoint"]:
            env["AWS_ENDPOINT_URL"] = ctx.obj["s3_endpoint"]
        job = jobs.submit_job(
            name, inner, address=address, env=env, working_dir=working_dir, echo=click.echo
        )
        where = f" --address {job.address}"
        click.echo(f"submitted job {job.job_id} to {job.address}")
        click.echo(f"  follow: harmonize submit logs {job.job_id} --follow{where}")
        click.echo(f"  status: harmonize submit status {job.job_id}{where}")
        click.echo(f"  stop:   harmonize submit stop {job.job_id}{where}")
        if job.started_local_head:
            click.echo(
                "  (a local Ray head was started for it; it serves later jobs until "
                "`harmonize submit shutdown`)"
            )
        if follow:
            _follow(job.job_id, job.address)


def _follow(job_id: str, address: str | None) -> None:
    from harmonize.distributed import jobs

    final = jobs.follow_job(job_id, address, echo=lambda chunk: click.echo(chunk, nl=False))
    info = jobs.job_status(job_id, address)
    click.echo(f"job {job_id} {final}" + (f": {info['message']}" if info["message"] else ""))
    if final != "SUCCEEDED":
        sys.exit(1)  # the job failed (not a usage error: that is 2)


for _name in ("train", "run", "report"):
    _submit_command(_name)


@submit.command(name="status")
@click.argument("job_id")
@_job_address_option
def submit_status(job_id: str, address: str | None) -> None:
    """The status of a submitted job (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from harmonize.distributed import jobs

    info = jobs.job_status(job_id, address)
    message = f" ({info['message']})" if info["message"] else ""
    click.echo(f"{info['job_id']}: {info['status']}{message}")
    click.echo(f"  entrypoint: {info['entrypoint']}")


@submit.command(name="logs")
@click.argument("job_id")
@_job_address_option
@click.option("--follow", is_flag=True, help="Keep streaming until the job ends.")
def submit_logs(job_id: str, address: str | None, follow: bool) -> None:
    """The logs of a submitted job (so far, or streamed with --follow)."""
    from harmonize.distributed import jobs

    if follow:
        _follow(job_id, address)
    else:
        click.echo(jobs.job_logs(job_id, address), nl=False)


@submit.command(name="stop")
@click.argument("job_id")
@_job_address_option
def submit_stop(job_id: str, address: str | None) -> None:
    """Stop a submitted job."""
    from harmonize.distributed import jobs

    if jobs.stop_job(job_id, address):
        click.echo(f"stop requested for {job_id}")
    else:
        click.echo(f"{job_id} had already finished: {jobs.job_status(job_id, address)['status']}")


@submit.command(name="shutdown")
def submit_shutdown() -> None:
    """Stop the local Ray head that `harmonize submit` started (never any other Ray)."""
    from harmonize.distributed.local_head import stop_owned_head

    url = stop_owned_head()
    click.echo(f"stopped the local Ray head at {url}" if url else "no local Ray head to stop")


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 on success, 2 with a one-line reason on bad usage or input."""
    try:
        # Without standalone mode click returns ctx.exit(n)'s code instead of exiting.
        code = cli.main(args=argv, prog_name="harmonize", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
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
