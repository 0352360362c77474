"""Ray Job entry point, run on a schedule: every configured method over the archive, then the
report. Idempotent: each run skips objects the manifest already has as ``ok``, so a night only
processes what arrived since the last one (and a failed night is simply run again).

    python jobs/nightly.py --config jobs/configs/nightly.yaml

Exit status 1 when a method failed (the others still run, and the report covers them).
"""

from __future__ import annotations

import time

import click
from common import CONFIGS, job_storage, load_job, run_command
from report import report_runs
from run import run_methods


@click.command(name="nightly")
@click.option("--config", "config_uri", default=str(CONFIGS / "nightly.yaml"), show_default=True)
def main(config_uri: str) -> None:
    """Run every configured method over the archive, then write the report."""
    started = time.perf_counter()
    storage = job_storage()
    spec = load_job(config_uri, storage, required=("archive", "out", "methods"))
    failed = run_methods(spec, storage, echo=click.echo)
    html = report_runs(spec, storage, echo=click.echo)
    click.echo(f"nightly done in {time.perf_counter() - started:.1f} s; report: {html}")
    if failed:
        click.echo(f"failed: {failed}", err=True)
        raise click.exceptions.Exit(1)


if __name__ == "__main__":
    run_command(main)
