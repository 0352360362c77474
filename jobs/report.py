"""Ray Job entry point: the report over the runs a job YAML lists (OUT/report/).

python jobs/report.py --config jobs/configs/nightly.yaml
"""

from __future__ import annotations

import click
from common import Echo, JobConfig, job_config_option, job_storage, load_job, run_command

from harmonize.io.storage import Storage, join


def report_runs(job: JobConfig, storage: Storage, echo: Echo = print) -> str:
    """Build the report over every configured run into OUT/report/; returns report.html's URI."""
    from harmonize.report import build_report

    runs = [job.run_dir(run) for run in job.methods]
    report = build_report(runs, join(job.out, "report"), storage, target_site=job.target_site)
    echo(report.markdown)
    return str(report.html_path)


@click.command(name="report")
@job_config_option
def main(config_uri: str) -> None:
    """Tables and figures over the job's runs."""
    storage = job_storage()
    job = load_job(config_uri, storage, needs_archive=False)
    click.echo(f"report: {report_runs(job, storage, echo=click.echo)}")


if __name__ == "__main__":
    run_command(main)
