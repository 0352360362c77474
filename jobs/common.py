"""What the job scripts share: reading a job YAML (local or s3://), the storage, exit codes.

A job YAML (jobs/configs/nightly.yaml) names a job's inputs, outputs and settings, so that a
scheduled cluster job runs the same job every night from one reviewed file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from harmonize.errors import ConfigError, HarmonizeError
from harmonize.io.storage import Storage

CONFIGS = Path(__file__).resolve().parent / "configs"


def job_storage() -> Storage:
    """S3 endpoint from AWS_ENDPOINT_URL (credentials: the usual AWS variables or IAM role)."""
    return Storage(endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def load_job(uri: str, storage: Storage, required: Sequence[str]) -> dict[str, Any]:
    """The job YAML at ``uri`` as a mapping holding at least the ``required`` keys."""
    import yaml

    try:
        spec = yaml.safe_load(storage.read_text(uri))
    except (HarmonizeError, yaml.YAMLError) as err:
        raise ConfigError(f'cannot read the job config "{uri}": {err}') from err
    if not isinstance(spec, dict):
        raise ConfigError(f'job config "{uri}" must be a YAML mapping, got {spec!r}')
    missing = [key for key in required if not spec.get(key)]
    if missing:
        raise ConfigError(f'job config "{uri}" lacks {missing}; see {CONFIGS} for examples')
    return spec


def run_command(command: click.Command, argv: list[str] | None = None) -> None:
    """Run a click command like `harmonize` does: exit 2 with a one-line reason on bad input."""
    try:
        command.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        sys.exit(2)
    except (click.ClickException, HarmonizeError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"{command.name}: error: {message}", err=True)
        sys.exit(2)


Echo = Callable[[str], Any]
