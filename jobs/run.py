"""Ray Job entry point: harmonize an archive with each method a job YAML lists.

    python jobs/run.py --config jobs/configs/nightly.yaml [--only NAME]...

Each entry of ``methods:`` (name, method, model, mode) runs over ``archive`` into
``OUT/runs/<name>/``. Runs are idempotent: objects already ``ok`` for the same method, model and
mode are skipped, so rerunning (or the nightly schedule) only processes new objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
from common import CONFIGS, Echo, job_storage, load_job, run_command

from harmonize.errors import ConfigError, HarmonizeError
from harmonize.io.storage import Storage, join


@dataclass(frozen=True)
class MethodRun:
    """One configured run: its folder name under OUT/runs/, the method, model URI and mode."""

    name: str
    method: str
    model: str
    mode: str = "direct"


def method_runs(spec: dict[str, Any]) -> list[MethodRun]:
    runs = []
    for entry in spec["methods"]:
        if not isinstance(entry, dict) or not entry.get("method") or not entry.get("model"):
            raise ConfigError(f"each methods: entry needs method and model, got {entry!r}")
        runs.append(
            MethodRun(
                entry.get("name") or entry["method"],
                entry["method"],
                entry["model"],
                entry.get("mode", "direct"),
            )
        )
    return runs


def run_dir(spec: dict[str, Any], run: MethodRun) -> str:
    return join(spec["out"], "runs", run.name)


def run_methods(
    spec: dict[str, Any], storage: Storage, only: tuple[str, ...] = (), echo: Echo = print
) -> list[str]:
    """Run every configured method (or ``only`` those); returns the names that failed (the
    others still run: one bad model must not hold back the rest)."""
    from harmonize.run import RunOptions, run_harmonization

    try:
        options = RunOptions(
            labels_uri=spec.get("labels"), progress=False, **(spec.get("run") or {})
        )
    except TypeError as err:
        raise ConfigError(f"bad run: settings {spec.get('run')}: {err}") from err
    failed = []
    for run in method_runs(spec):
        if only and run.name not in only:
            continue
        try:
            summary = run_harmonization(
                input_uri=spec["archive"],
                out_uri=run_dir(spec, run),
                method=run.method,
                model_uri=run.model,
                mode=run.mode,
                storage=storage,
                options=options,
            )
            echo(f"{run.name}: {summary.line()}")
        except HarmonizeError as err:
            echo(f"{run.name}: FAILED: {err}")
            failed.append(run.name)
    return failed


@click.command(name="run")
@click.option("--config", "config_uri", default=str(CONFIGS / "nightly.yaml"), show_default=True)
@click.option("--only", multiple=True, help="Run only this methods: entry (repeat).")
def main(config_uri: str, only: tuple[str, ...]) -> None:
    """Harmonize the job's archive with each configured method."""
    storage = job_storage()
    spec = load_job(config_uri, storage, required=("archive", "out", "methods"))
    failed = run_methods(spec, storage, only, echo=click.echo)
    if failed:
        raise click.exceptions.Exit(1)


if __name__ == "__main__":
    run_command(main)
