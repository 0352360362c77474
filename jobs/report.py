"""Ray Job entry point: the report over the runs a job YAML lists (OUT/report/).

python jobs/report.py --config jobs/configs/nightly.yaml
"""

from __future__ import annotations

from typing import Any

import click
from common import CONFIGS, Echo, job_storage, load_job, run_command
from run import method_runs, run_dir

from harmonize.io.storage import Storage, join


def report_runs(spec: dict[str, Any], storage: Storage, echo: Echo = print) -> str:
    """Build the report over every configured run into OUT/report/; returns report.html's URI."""
    from harmonize.report import build_report

    runs = [run_dir(spec, run) for run in method_runs(spec)]
    report = build_report(
        runs, join(spec["out"], "report"), storage, target_site=spec.get("target_site")
    )
    echo(report.markdown)
    return str(report.html_path)


@click.command(name="report")
@click.option("--config", "config_uri", default=str(CONFIGS / "nightly.yaml"), show_default=True)
def main(config_uri: str) -> None:
    """Tables and figures over the job's runs."""
    storage = job_storage()
    spec = load_job(config_uri, storage, required=("out", "methods"))
    click.echo(f"report: {report_runs(spec, storage, echo=click.echo)}")


if __name__ == "__main__":
    run_command(main)
