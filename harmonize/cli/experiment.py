"""`harmonize experiment` (the paper's benchmark end to end) and `harmonize demo` (the product
on a small two-site archive)."""

from __future__ import annotations

from typing import Any

import click

from harmonize.cli.common import (
    CONFIG,
    METHOD_CHOICE,
    PACKAGED,
    URI,
    LocalPath,
    executor_option,
    options,
    progress_option,
    storage,
)
from harmonize.cli.synth import Site, builtin_sites
from harmonize.experiments.config import QUICK, ExperimentConfig, neural_modes
from harmonize.models.registry import NEURAL, method_names

DEFAULTS = ExperimentConfig.defaults()
#: The flags that shape a synthetic archive, refused with a user's own (--source ...).
SYNTHETIC_ONLY = {
    "n_train": "--n-train",
    "n_test": "--n-test",
    "matrix": "--matrix",
    "seed": "--seed",
    "source_sites": "--source-profile",
    "target_site": "--target-profile",
    "lesion_strength": "--lesion-strength",
}
CONFIG_DEFAULT = "the config's"


def _shown(value: Any) -> str:
    return ", ".join(value) if isinstance(value, tuple) else str(value)


def field_option(flag: str, field: str, what: str, default: str = "", **kwargs: Any) -> Any:
    """The option that sets the ExperimentConfig ``field``; its help ends with the field's real
    default (``default`` says it in words) and --quick's value, ``[default: X; --quick: Y]``."""
    shown = default or _shown(DEFAULTS[field])
    quick = f"; --quick: {_shown(QUICK[field])}" if field in QUICK else ""
    return click.option(flag, field, help=f"{what} [default: {shown}{quick}].", **kwargs)


class MethodConfig(click.ParamType):
    """``METHOD=YAML``: a neural method and its training config (see ``ConfigFile``)."""

    name = "method=yaml"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        method, _, config = str(value).partition("=")
        if method not in method_names(NEURAL) or not config:
            self.fail(f'write METHOD=YAML, METHOD one of {method_names(NEURAL)}, got "{value}"')
        return method, CONFIG.convert(config, param, ctx)


EXPERIMENT_OPTIONS = [
    click.option("--out", "out_uri", required=True, type=URI, help="Output folder or s3:// URI."),
    click.option("--quick", is_flag=True, help="A minute-sized run of every step (CI)."),
    click.option("--fresh", is_flag=True, help="Do every step again, even those an earlier run "
                 "of this experiment into the same --out finished (by default they are reused)."),
    field_option("--n-train", "n_train", "Training images per site", type=click.IntRange(4)),
    field_option("--n-test", "n_test", "Test images per site", type=click.IntRange(4)),
    field_option("--matrix", "matrix", "Image side (px)", type=click.IntRange(64, 8192)),
    field_option("--seed", "seed", "Training archive seed (test: seed + 1)", type=int),
    field_option("--source-profile", "source_sites", "A source site profile: one shift family, "
                 f"one report each ({', '.join(builtin_sites())} or a YAML) (repeat)",
                 multiple=True, type=Site()),
    field_option("--target-profile", "target_site", "The target site profile", type=Site()),
    click.option("--source", "source_uri", type=URI, help="Your own source site's archive "
                 "(folder or s3:// prefix of DICOM), instead of synthetic sites; with --target "
                 "and --labels."),
    click.option("--target", "target_uri", type=URI, help="Your own target site's archive."),
    click.option("--labels", "labels_uri", type=URI, help="The labels table of both archives' "
                 "images: image_id (SOPInstanceUID), label (1 = finding), optional truth_path."),
    click.option("--truth", "truth_uri", type=URI, help="Folder of the source images' truth "
                 "images (the same patients at the target site): the labels' truth_path is "
                 "relative to it, else the same relative path as under --source."),
    field_option("--test-fraction", "test_fraction", "Share of your images in the test split "
                 "(by a hash of image_id)", type=click.FloatRange(0.05, 0.95)),
    field_option("--method", "methods", "Methods to compare (repeat)", multiple=True,
                 type=METHOD_CHOICE),
    field_option("--mode", "modes", "Output modes of the neural methods (repeat)", multiple=True,
                 type=click.Choice(neural_modes())),
    field_option("--gan-steps", "gan_steps", "GAN training steps", CONFIG_DEFAULT,
                 type=click.IntRange(1)),
    field_option("--gan-config", "gan_configs", "A neural method's training config, METHOD=YAML, "
                 f"YAML a path, an s3:// URI or a packaged config ({PACKAGED}) (repeat)",
                 "METHOD=<method>-cpu-quick", multiple=True, type=MethodConfig()),
    field_option("--classifier-steps", "classifier_steps", "Classifier training steps",
                 CONFIG_DEFAULT, type=click.IntRange(1)),
    field_option("--classifier-config", "classifier_config", "Classifier training config, like "
                 "--gan-config's YAML", "classifier-cpu-quick", type=CONFIG),
    field_option("--lesion-strength", "lesion_strength", "Strength of the synthetic findings "
                 "(the benchmark's difficulty)", type=click.FloatRange(0)),
    executor_option(default=None, help="ray: the runs on local Ray Data; local: in one process "
                    f"[default: {DEFAULTS['executor']}]."),
    progress_option(default=False),
]  # fmt: skip


@click.command()
@options(EXPERIMENT_OPTIONS)
@click.pass_context
def experiment(
    ctx: click.Context, out_uri: str, quick: bool, fresh: bool, progress: bool, **flags: Any
) -> None:
    """The paper's benchmark end to end: synth (or split your own archives), classifier, site
    detector, every method, runs, one report per source site. Started again into the same
    --out, it continues where it stopped: a step finished with the same inputs is reused."""
    from harmonize.distributed.stream import make_executor
    from harmonize.experiments.experiment import run_experiment

    overrides = {k: v for k, v in flags.items() if v is not None and v != ()}
    archive = {"source_uri": "--source", "target_uri": "--target", "labels_uri": "--labels"}
    missing = [flag for key, flag in archive.items() if key not in overrides]
    if missing and (len(missing) < len(archive) or "truth_uri" in overrides):
        raise click.UsageError(
            f"--source, --target and --labels go together (your own two sites' archives and "
            f"their labels); missing: {', '.join(missing)}"
        )
    synthetic_only = sorted(set(overrides) & set(SYNTHETIC_ONLY))
    if "source_uri" in overrides and synthetic_only:
        given = ", ".join(SYNTHETIC_ONLY[k] for k in synthetic_only)
        raise click.UsageError(
            f"{given} describe synthetic sites; leave them out with --source/--target/--labels "
            "(your archives' own images are split and used)"
        )
    for key in ("methods", "modes", "source_sites"):
        if key in overrides:
            overrides[key] = tuple(dict.fromkeys(overrides[key]))
    config = ExperimentConfig.quick(**overrides) if quick else ExperimentConfig(**overrides)
    result = run_experiment(
        config,
        out_uri,
        executors=make_executor,
        storage=storage(ctx),
        echo=click.echo,
        progress=progress,
        fresh=fresh,
    )
    for family in result.families:
        click.echo(f"\n## {family.source} → {family.target}\n")
        click.echo(family.report.markdown)
    for family in result.families:
        click.echo(f"open the report of {family.source}: {family.report.html_path}")


@click.command()
@click.argument("out_dir", required=False, default="demo-out", type=LocalPath(file_okay=False))
@click.option("--n-per-site", type=click.IntRange(2), default=24, help="Images per site.")
@click.option("--matrix", type=click.IntRange(64), default=1024, help="Image side in pixels.")
@executor_option()
@click.pass_context
def demo(ctx: click.Context, out_dir: str, n_per_site: int, matrix: int, executor: str) -> None:
    """The whole product on a small synthetic two-site archive: synth → fit → run → report,
    into OUT_DIR (default: demo-out)."""
    from harmonize.distributed.stream import make_executor
    from harmonize.experiments.demo import run_demo

    result = run_demo(
        out_dir,
        n_per_site=n_per_site,
        matrix=matrix,
        executor=make_executor(executor),
        storage=storage(ctx),
        echo=click.echo,
    )
    click.echo(f"\nopen the report: {result}")
