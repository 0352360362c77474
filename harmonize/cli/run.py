"""`harmonize run`: harmonize an archive into derived DICOM and a manifest, on an executor."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from harmonize.cli.common import (
    METHOD_CHOICE,
    MODES,
    URI,
    address_option,
    executor_option,
    progress_option,
    storage,
)
from harmonize.io.archive import DICOM_SUFFIXES, MAX_PIXELS, PART_ROWS, PART_SECONDS
from harmonize.models.registry import method as registry_method

if TYPE_CHECKING:
    from harmonize.dicom.deidentify import DeidentifyOptions

DEID_SECRET_ENV = "HARMONIZE_DEID_SECRET"
RETAIN_DATES = ("none", "modified", "full")  # harmonize.dicom.deidentify.RETAIN_DATES


@click.command()
@click.option("--method", required=True, type=METHOD_CHOICE, help="The model's method.")
@click.option("--model", "model_uri", required=True, type=URI, help="Fitted model URI.")
@click.option("--input", "input_uri", required=True, type=URI, help="Archive to harmonize.")
@click.option("--out", "out_uri", required=True, type=URI, help="Output prefix.")
@click.option(
    "--store-derived",
    type=URI,
    help="A DICOMweb root (dicomweb+http(s)://HOST/ROOT, may be another PACS than the "
    "input's): derived images are stored there by STOW-RS instead of OUT/images/.",
)
@click.option(
    "--labels",
    "labels_uri",
    type=URI,
    help="Labels table (image_id, site, label) to join into the manifest.",
)
@click.option(
    "--classifier",
    type=URI,
    help="Target-site classifier (harmonize train classifier): adds score_in / score_out.",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    help="direct: model output; curve: one monotone intensity curve; local: monotone curves on "
    "a coarse grid, blended, plus bounded detail-band gains (curve and local: neural methods, "
    "applied to the original at full resolution) [default: curve for a neural method, the "
    "method guide's safe default (docs/results.md); direct for a classical one].",
)
@executor_option()
@address_option
@click.option(
    "--actors",
    type=click.IntRange(1),
    help="Harmonizer actor-pool size [default: one per GPU; CPU tasks without GPUs].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=8,
    help="Images per batch: decoded in one call, harmonized and scored in one call (both "
    "executors; on Ray also per Ray Data block).",
)
@click.option(
    "--gpu-decode/--no-gpu-decode",
    default=None,
    help="Decode JPEG 2000 / HTJ2K / JPEG pixel data in the harmonizer actors, a batch per call "
    "on their GPU (nvImageCodec: harmonize[gpu]), instead of in the CPU tasks [default: on "
    "when the actors hold GPUs; --no-gpu-decode where the GPU nodes lack nvImageCodec].",
)
@click.option(
    "--suffix",
    "suffixes",
    multiple=True,
    default=DICOM_SUFFIXES,
    help="Input object name endings to take ('' takes every object).",
)
@click.option("--run-id", help="Run id [default: UTC time + random].")
@click.option("--limit", type=click.IntRange(1), help="At most N objects.")
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=MAX_PIXELS,
    show_default=True,
    help="Refuse (as error rows, before decoding) images whose header claims more pixels "
    "(Rows x Columns): a corrupt header must not exhaust memory.",
)
@click.option(
    "--part-rows",
    type=click.IntRange(1),
    default=PART_ROWS,
    help="Commit the manifest every N rows (a killed run loses at most one part's work).",
)
@click.option(
    "--part-seconds",
    type=click.FloatRange(0),
    default=PART_SECONDS,
    help="... and at least this often while rows arrive.",
)
@click.option(
    "--deidentify",
    is_flag=True,
    help="De-identify the derived images by the DICOM PS3.15 Basic Profile; names, IDs and "
    "UIDs (the manifest's image_id too) become pseudonyms keyed on a secret.",
)
@click.option(
    "--deid-secret-env",
    default=DEID_SECRET_ENV,
    show_default=True,
    metavar="NAME",
    help="The environment variable holding the de-identification secret (the same secret "
    "gives the same pseudonyms every night).",
)
@click.option(
    "--retain-dates",
    type=click.Choice(RETAIN_DATES),
    default="none",
    show_default=True,
    help="With --deidentify: none (dates emptied), modified (every date shifted by one "
    "secret-keyed offset) or full (dates kept).",
)
@click.option(
    "--retain-device", is_flag=True, help="With --deidentify: keep device identity (serials)."
)
@progress_option()
@click.pass_context
def run(
    ctx: click.Context,
    method: str,
    model_uri: str,
    input_uri: str,
    out_uri: str,
    store_derived: str | None,
    labels_uri: str | None,
    classifier: str | None,
    mode: str | None,
    executor: str,
    address: str | None,
    actors: int | None,
    batch_size: int,
    gpu_decode: bool | None,
    suffixes: tuple[str, ...],
    run_id: str | None,
    limit: int | None,
    max_pixels: int,
    part_rows: int,
    part_seconds: float,
    deidentify: bool,
    deid_secret_env: str,
    retain_dates: str,
    retain_device: bool,
    progress: bool,
) -> None:
    """Harmonize an archive (a folder, s3:// prefix or DICOMweb PACS): derived DICOM under
    OUT/images/ (or stored to the --store-derived PACS), manifest under OUT/manifest/,
    the run's summary under OUT/summaries/ and, on stderr, in one line (counts, transient
    errors, rate).

    \b
    Exit status:
      0  every listed object ended ok or skipped
      1  the run could not finish; the manifest holds the parts committed so far
      2  bad usage or input, found before any row was written
      3  some objects ended as error rows (every row written, the others done)
      4  no object ended ok or skipped (every row written, all errors)
    """
    from harmonize.distributed.stream import make_executor
    from harmonize.run.orchestrate import run_harmonization
    from harmonize.run.spec import ExitCode, RunIncomplete, RunOptions

    deid = deidentify_options(deidentify, deid_secret_env, retain_dates, retain_device)
    runner = make_executor(
        executor, address=address, actors=actors, batch_size=batch_size, gpu_decode=gpu_decode
    )
    options = RunOptions(
        suffixes=tuple(s for s in suffixes if s),
        labels_uri=labels_uri,
        run_id=run_id,
        progress=progress,
        limit=limit,
        max_pixels=max_pixels,
        part_rows=part_rows,
        part_seconds=part_seconds,
        deidentify=deid,
        store_derived=store_derived,
    )
    try:
        summary = run_harmonization(
            input_uri=input_uri,
            out_uri=out_uri,
            method=method,
            model_uri=model_uri,
            executor=runner,
            mode=mode or registry_method(method).default_mode,
            classifier_uri=classifier,
            storage=storage(ctx),
            options=options,
        )
    except RunIncomplete as err:
        click.echo(f"harmonize: error: {err}", err=True)
        ctx.exit(ExitCode.INCOMPLETE)
    click.echo(summary.line(), err=True)  # the night's story in one line, beside the errors
    ctx.exit(summary.exit_code)


def deidentify_options(
    deidentify: bool, secret_env: str, retain_dates: str, retain_device: bool
) -> DeidentifyOptions | None:
    """The run's de-identification, its secret read from the environment variable
    ``secret_env`` (None without --deidentify)."""
    if not deidentify:
        if retain_dates != "none" or retain_device:
            raise click.UsageError("--retain-dates and --retain-device need --deidentify")
        return None
    secret = os.environ.get(secret_env, "")
    if not secret:
        raise click.UsageError(
            f"--deidentify needs a secret in the environment variable {secret_env} (set a long "
            "random string, the same every night, or name another with --deid-secret-env)"
        )
    from harmonize.dicom.deidentify import DeidentifyOptions

    return DeidentifyOptions(secret, retain_dates=retain_dates, retain_device=retain_device)
