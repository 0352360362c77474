"""`harmonize run`: harmonize an archive into derived DICOM and a manifest, on an executor."""

from __future__ import annotations

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


@click.command()
@click.option("--method", required=True, type=METHOD_CHOICE, help="The model's method.")
@click.option("--model", "model_uri", required=True, type=URI, help="Fitted model URI.")
@click.option("--input", "input_uri", required=True, type=URI, help="Archive to harmonize.")
@click.option("--out", "out_uri", required=True, type=URI, help="Output prefix.")
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
    default="direct",
    help="direct: model output; curve: one monotone intensity curve; local: monotone curves on "
    "a coarse grid, blended, plus bounded detail-band gains (curve and local: neural methods, "
    "applied to the original at full resolution).",
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
    help="Images per Ray Data block and per harmonizer call.",
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
@progress_option()
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
    actors: int | None,
    batch_size: int,
    suffixes: tuple[str, ...],
    run_id: str | None,
    limit: int | None,
    max_pixels: int,
    part_rows: int,
    part_seconds: float,
    progress: bool,
) -> None:
    """Harmonize an archive: derived DICOM under OUT/images/, manifest under OUT/manifest/,
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

    runner = make_executor(executor, address=address, actors=actors, batch_size=batch_size)
    options = RunOptions(
        suffixes=tuple(s for s in suffixes if s),
        labels_uri=labels_uri,
        run_id=run_id,
        progress=progress,
        limit=limit,
        max_pixels=max_pixels,
        part_rows=part_rows,
        part_seconds=part_seconds,
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
            storage=storage(ctx),
            options=options,
        )
    except RunIncomplete as err:
        click.echo(f"harmonize: error: {err}", err=True)
        ctx.exit(ExitCode.INCOMPLETE)
    click.echo(summary.line(), err=True)  # the night's story in one line, beside the errors
    ctx.exit(summary.exit_code)
