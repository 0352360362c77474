"""Ray Job entry point, run on a schedule: every configured method over the archive, then the
report. Idempotent: each run skips objects the manifest already has as ``ok``, so a night only
processes what arrived since the last one (and a failed night is simply run again).

    python jobs/nightly.py --config jobs/configs/nightly.yaml

Exit status: the worst of its runs' (as jobs/run.py; 0 when every run ended clean). A failed run
does not stop the others, and the report covers them all.
"""

from __future__ import annotations

import time

import click
from common import job_config_option, job_storage, load_job, run_command
from report import report_runs
from run import exit_with_worst, run_methods


@click.command(name="nightly")
@job_config_option
def main(config_uri: str) -> None:
    """Run every configured method over the archive, then write the report."""
    started = time.perf_counter()
    storage = job_storage()
    job = load_job(config_uri, storage)
    codes = run_methods(job, storage, echo=click.echo)
    html = report_runs(job, storage, echo=click.echo)
    click.echo(f"nightly done in {time.perf_counter() - started:.1f} s; report: {html}")
    exit_with_worst(codes, echo=lambda line: click.echo(line, err=True))


if __name__ == "__main__":
    run_command(main)
