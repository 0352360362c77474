"""`harmonize train METHOD|classifier`: fit a classical method, or train a neural method or the
target-site classifier with Ray Train. One command per registered method.

Without ``--config``, ``--gpus 0`` trains the packaged CPU-sized config (``<name>-cpu-quick``,
said in one line) and ``--gpus N`` the published recipe (the config's defaults).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from harmonize.cli.common import CONFIG, PACKAGED, URI, progress_option, ray_train_options, storage
from harmonize.experiments.packaged import config_path, cpu_quick_name
from harmonize.models.registry import METHODS, NEURAL, MethodEntry

if TYPE_CHECKING:
    from harmonize.training.job import TrainingJob


@click.group()
def train() -> None:
    """Fit or train a harmonization method (or the target-site classifier)."""


def _config_option(name: str, what: str) -> Any:
    return click.option(
        "--config",
        "config_uri",
        type=CONFIG,
        help=f"YAML {what} config: a path, an s3:// URI or a packaged config's name ({PACKAGED}) "
        f"[default: {name}-cpu-quick with --gpus 0; with --gpus N the published recipe, "
        f"annotated in the repository's jobs/configs/{name}.yaml].",
    )


def _config_or_default(name: str, config_uri: str | None, gpus: int) -> str | None:
    """``--config`` as given; without it, the packaged CPU-sized config on CPU (said in one
    line) and None (the published defaults) on GPUs."""
    if config_uri or gpus:
        return config_uri
    quick = cpu_quick_name(name)
    click.echo(
        f"no --config and --gpus 0: training the packaged CPU-sized config {quick}; for the "
        f"published recipe add --gpus N, or --config jobs/configs/{name}.yaml of the repository"
    )
    return config_path(quick)


def _train_on_ray(
    ctx: click.Context, job: TrainingJob, out: str, ray: dict[str, Any]
) -> dict[str, Any]:
    """Train ``job`` with Ray Train into ``out``; ``ray``: the Ray Train options' values."""
    from harmonize.distributed.train import train_distributed

    return train_distributed(
        job,
        out,
        gpus=ray["gpus"],
        workers=ray["workers"],
        storage=storage(ctx),
        ray_address=ray["address"],
        resume=ray["resume"],
        progress=ray["progress"],
    )


def _trained(what: str, summary: dict[str, Any], gpus: int) -> str:
    resumed = f", resumed from step {summary['start_step']}" if summary["start_step"] else ""
    return (
        f"trained {what} to step {summary['steps']} on {summary['workers']} worker(s) "
        f"({'GPU' if gpus else 'CPU'}{resumed}) in {summary['seconds']:.1f} s"
    )


def _classical_command(entry: MethodEntry) -> None:
    @train.command(name=entry.name, help=entry.summary)
    @click.option("--target", required=True, type=URI, help="Target-site archive to learn from.")
    @click.option(
        "--source",
        type=URI,
        help="Not needed by this method (accepted for a uniform command line).",
    )
    @click.option("--out", required=True, type=URI, help="Where to save the fitted model.")
    @click.option(
        "--config",
        "config_uri",
        type=CONFIG,
        help=f"YAML of {entry.name}'s settings, a path or s3:// URI (unknown keys are refused) "
        "[default: the method's defaults].",
    )
    @click.option("--workers", type=click.IntRange(1), help="Decode threads [default: all cores].")
    @progress_option()
    @click.pass_context
    def command(
        ctx: click.Context,
        target: str,
        source: str | None,
        out: str,
        config_uri: str | None,
        workers: int | None,
        progress: bool,
    ) -> None:
        from harmonize.methods.fit import fit_classical
        from harmonize.validate import load_config

        store = storage(ctx)
        config: Any = None  # the method's defaults
        if config_uri:
            assert entry.classical is not None
            config = load_config(entry.classical().config_class, config_uri, store, what=entry.name)
        result = fit_classical(
            entry.name,
            target,
            out,
            config=config,
            storage=store,
            workers=workers,
            progress=progress,
        )
        card = result.card
        click.echo(
            f"fitted {entry.name} on {card['n_images']} target images "
            f"({card['n_unreadable']} unreadable) in {card['fit_seconds']:.1f} s; "
            f"model: {result.model_uri}"
        )


def _neural_command(entry: MethodEntry) -> None:
    @train.command(name=entry.name, help=entry.summary)
    @click.option("--source", required=True, type=URI, help="Source-site archive (look to change).")
    @click.option("--target", required=True, type=URI, help="Target-site archive (look to learn).")
    @click.option(
        "--out", required=True, type=URI, help="Output prefix: model, checkpoints/, cache/."
    )
    @_config_option(entry.name, "training")
    @click.option(
        "--crop-size", type=click.IntRange(8), help="Override the config's crop size (px)."
    )
    @ray_train_options
    @click.pass_context
    def command(
        ctx: click.Context,
        source: str,
        target: str,
        out: str,
        config_uri: str | None,
        crop_size: int | None,
        steps: int | None,
        **ray: Any,
    ) -> None:
        from harmonize.training.config import load_train_config
        from harmonize.training.job import gan_job

        config = load_train_config(
            _config_or_default(entry.name, config_uri, ray["gpus"]),
            storage(ctx),
            method=entry.name,
            steps=steps,
            crop_size=crop_size,
        )
        summary = _train_on_ray(ctx, gan_job(config, source, target), out, ray)
        losses = ", ".join(f"{k} {v:.4f}" for k, v in sorted(summary["losses"].items()))
        click.echo(
            f"{_trained(entry.name, summary, ray['gpus'])}; "
            f"final losses: {losses or 'none reported'}"
        )
        click.echo(f"model: {summary['model_uri']}")


for _entry in METHODS.values():
    (_neural_command if _entry.kind == NEURAL else _classical_command)(_entry)


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
@_config_option("classifier", "classifier")
@ray_train_options
@click.pass_context
def train_classifier_command(
    ctx: click.Context,
    archive: str,
    labels_uri: str,
    out: str,
    config_uri: str | None,
    steps: int | None,
    **ray: Any,
) -> None:
    """Train the target-site classifier (finding / no finding) with Ray Train."""
    from harmonize.classifier.config import load_classifier_config
    from harmonize.training.job import classifier_job

    config = load_classifier_config(
        _config_or_default("classifier", config_uri, ray["gpus"]), storage(ctx), steps=steps
    )
    summary = _train_on_ray(ctx, classifier_job(config, archive, labels_uri), out, ray)
    loss = summary["losses"].get("loss")
    click.echo(
        f"{_trained('the classifier', summary, ray['gpus'])}; final loss "
        + (f"{loss:.4f}" if loss is not None else "none reported")
    )
    val, n_train = summary["validation"], sum(summary["n_images"]["train"].values())
    click.echo(
        f"validation AUC {val['auc']:.3f} on {val['n']} held-out images ({val['finding']} with a "
        f"finding, {val['no_finding']} without; {n_train} used for training)"
    )
    click.echo(f"model: {summary['model_uri']}")
