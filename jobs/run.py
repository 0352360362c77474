"""Ray Job entry point: harmonize an archive with each method a job YAML lists.

    python jobs/run.py --config jobs/configs/nightly.yaml [--only NAME]...

Each entry of ``methods:`` (name, method, model, mode) runs over ``archive`` into
``OUT/runs/<name>/``. Runs are idempotent: objects already ``ok`` for the same method, model and
mode are skipped, so rerunning (or the nightly schedule) only processes new objects. The job's
``run:`` settings name the executor (``executor``, ``address``, ``actors``, ``batch_size``,
``object_store_mib``, ``gpu_decode``) and the run options (``suffixes``, ``limit``, ...).

Exit status: the worst of its runs' (see ``harmonize run --help``; worst first: 1 a run could
not finish, 2 a run's model or input was bad, 4 a run wrote only errors, 3 some errors, 0 clean).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import click
from common import Echo, JobConfig, job_config_option, job_storage, load_job, run_command

from harmonize.errors import HarmonizeError
from harmonize.io.storage import Storage

if TYPE_CHECKING:
    from harmonize.run.spec import ExitCode


def run_methods(
    job: JobConfig, storage: Storage, only: tuple[str, ...] = (), echo: Echo = print
) -> dict[str, ExitCode]:
    """Run every configured method (or ``only`` those); returns each run's exit code, the one
    `harmonize run` would have exited with (the others still run after a failed one: one bad
    model must not hold back the rest)."""
    from harmonize.distributed.stream import make_executor
    from harmonize.run.orchestrate import run_harmonization
    from harmonize.run.spec import ExitCode, RunIncomplete, RunOptions

    settings = job.run
    executor = make_executor(
        settings.executor,
        address=settings.address,
        actors=settings.actors,
        batch_size=settings.batch_size,
        object_store_mib=settings.object_store_mib,
        gpu_decode=settings.gpu_decode,
    )
    options = RunOptions(
        labels_uri=job.labels,
        progress=False,
        limit=settings.limit,
        store_derived=job.store_derived,
        deidentify=job.deidentify.options() if job.deidentify is not None else None,
    )
    if settings.suffixes is not None:
        options = replace(options, suffixes=settings.suffixes)
    every_run = {"input_uri": job.archive_uri(), "executor": executor, "storage": storage}
    codes: dict[str, ExitCode] = {}
    for run in job.methods:
        if only and run.name not in only:
            continue
        try:
            summary = run_harmonization(
                out_uri=job.run_dir(run),
                method=run.method,
                model_uri=run.model,
                mode=run.mode,
                classifier_uri=job.classifier,
                options=options,
                **every_run,
            )
            echo(f"{run.name}: {summary.line()}")
            codes[run.name] = summary.exit_code
        except HarmonizeError as err:
            echo(f"{run.name}: FAILED: {err}")
            codes[run.name] = (
                ExitCode.INCOMPLETE if isinstance(err, RunIncomplete) else ExitCode.USAGE
            )
    return codes


def exit_with_worst(codes: dict[str, ExitCode], echo: Echo = print) -> None:
    """Exit with the worst of the runs' codes, naming the runs that did not end clean."""
    from harmonize.run.spec import worst_exit_code

    worst = worst_exit_code(codes.values())
    if worst:
        unclean = ", ".join(f"{name} {int(code)}" for name, code in codes.items() if code)
        echo(f"runs that did not end clean (name, exit code): {unclean}")
        raise click.exceptions.Exit(int(worst))


@click.command(name="run")
@job_config_option
@click.option("--only", multiple=True, help="Run only this methods: entry (repeat).")
def main(config_uri: str, only: tuple[str, ...]) -> None:
    """Harmonize the job's archive with each configured method."""
    storage = job_storage()
    job = load_job(config_uri, storage)
    exit_with_worst(run_methods(job, storage, only, echo=click.echo), echo=click.echo)


if __name__ == "__main__":
    run_command(main)
