"""What the job scripts share: the job YAML (validated), the storage, exit codes.

A job YAML (jobs/configs/nightly.yaml) names a job's inputs, outputs and settings, so that a
scheduled cluster job runs the same job every night from one reviewed file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harmonize.cli.common import URI
from harmonize.errors import ConfigError, HarmonizeError
from harmonize.io.dicomweb import is_dicomweb
from harmonize.io.storage import Storage, join
from harmonize.validate import (
    FieldError,
    check_bool,
    check_choice,
    check_int,
    check_text,
    from_mapping,
    load_config,
    set_field,
)

if TYPE_CHECKING:
    from harmonize.dicom.deidentify import DeidentifyOptions

CONFIGS = Path(__file__).resolve().parent / "configs"


def config_option(example: str, help: str, kind: click.ParamType = URI) -> Any:
    """--config of a job script, by default the example ``jobs/configs/<example>``; a relative
    path is made absolute at once, like every local path of `harmonize`."""
    default = str(CONFIGS / example)
    return click.option(
        "--config", "config_uri", type=kind, default=default, show_default=True, help=help
    )


#: --config of the scripts that read a job YAML (run, report, nightly).
job_config_option = config_option("nightly.yaml", "The job YAML, a local path or s3:// URI.")


def job_storage() -> Storage:
    """S3 endpoint from AWS_ENDPOINT_URL (credentials: the usual AWS variables or IAM role)."""
    return Storage(endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


@dataclass(frozen=True)
class MethodRun:
    """One ``methods:`` entry: a folder name under OUT/runs/, the method, model URI and mode."""

    method: str
    model: str
    name: str = ""  # default: the method's name
    mode: str = ""  # default: the method's (harmonize.models.registry: neural curve)

    def __post_init__(self) -> None:
        from harmonize.models.registry import method

        check_text("job methods entry", "model", self.model)
        entry = method(check_text("job methods entry", "method", self.method))
        set_field(self, "mode", self.mode or entry.default_mode)
        check_choice(f"job methods entry {self.method}", "mode", self.mode, entry.modes)
        set_field(self, "name", self.name or self.method)


@dataclass(frozen=True)
class RunSettings:
    """The ``run:`` section: how the runs execute (``make_executor``'s settings) and what they
    take (``RunOptions``)."""

    executor: str = "ray"
    address: str | None = None
    actors: int | None = None
    batch_size: int = 8
    object_store_mib: int | None = 1024
    gpu_decode: bool | None = None  # None: auto (on when the harmonize actors hold GPUs)
    suffixes: tuple[str, ...] | None = None  # None: DICOM names; [""]: every object
    limit: int | None = None

    def __post_init__(self) -> None:
        check_choice("job run", "executor", self.executor, ("ray", "local"))
        for name in ("actors", "object_store_mib", "limit"):
            if getattr(self, name) is not None:
                check_int("job run", name, getattr(self, name), low=1)
        check_int("job run", "batch_size", self.batch_size, low=1)
        if self.gpu_decode is not None:
            check_bool("job run", "gpu_decode", self.gpu_decode)
        if self.suffixes is not None:
            set_field(self, "suffixes", tuple(str(s) for s in self.suffixes if s))


@dataclass(frozen=True)
class DeidentifySettings:
    """The ``deidentify:`` section: the PS3.15 Basic Profile on every derived image, keyed on
    the secret in the environment variable ``secret_env`` (never in the YAML), with the retain
    options of `harmonize run --deidentify`."""

    secret_env: str = "HARMONIZE_DEID_SECRET"
    retain_dates: str = "none"  # none | modified | full
    retain_device: bool = False

    def __post_init__(self) -> None:
        from harmonize.dicom.deidentify import RETAIN_DATES

        check_text("job deidentify", "secret_env", self.secret_env)
        check_choice("job deidentify", "retain_dates", self.retain_dates, RETAIN_DATES)
        check_bool("job deidentify", "retain_device", self.retain_device)

    def options(self) -> DeidentifyOptions:
        """The runs' de-identification, with the secret read from the environment now."""
        from harmonize.dicom.deidentify import DeidentifyOptions

        secret = os.environ.get(self.secret_env, "")
        if not secret:
            raise ConfigError(
                f"the job's deidentify section needs a secret in the environment variable "
                f"{self.secret_env}; give the job that variable (a long random string, the same "
                "every night)"
            )
        return DeidentifyOptions(secret, self.retain_dates, self.retain_device)


@dataclass(frozen=True)
class JobConfig:
    """A job YAML (``jobs/configs/nightly.yaml``): the archive, where results go, the labels,
    the target site, the classifier that scores every image (with labels, the report's AUC),
    the methods to run and the run settings. Unknown keys are refused."""

    out: str
    methods: tuple[MethodRun, ...]
    archive: str | None = None  # needed by the runs; the report alone reads only OUT
    labels: str | None = None
    target_site: str | None = None
    classifier: str | None = None  # a target-site classifier: scores, so the report has AUCs
    since_days: int | None = None  # DICOMweb archive: list studies of the last N days only
    store_derived: str | None = None  # a DICOMweb root the derived images are stored to
    deidentify: DeidentifySettings | None = None  # None: derived images keep the source's
    run: RunSettings = field(default_factory=RunSettings)

    def __post_init__(self) -> None:
        check_text("job", "out", self.out)
        for name in ("archive", "labels", "target_site", "classifier", "store_derived"):
            if getattr(self, name) is not None:
                check_text("job", name, getattr(self, name))
        if self.since_days is not None:
            check_int("job", "since_days", self.since_days, low=0)
            if self.archive is not None and not is_dicomweb(self.archive):
                raise FieldError(
                    f'job since_days needs a DICOMweb archive (dicomweb+http://...), not "'
                    f'{self.archive}"; remove it (the skip index already skips what is done)',
                    "since_days",
                )
        if not isinstance(self.methods, list | tuple) or not self.methods:
            raise FieldError(f"job methods must be a list of runs, got {self.methods!r}", "methods")
        set_field(
            self,
            "methods",
            tuple(from_mapping(MethodRun, m, "job methods entry") for m in self.methods),
        )
        names = [m.name for m in self.methods]
        if len(set(names)) != len(names):
            raise FieldError(f"job methods entries need distinct names, got {names}", "name")
        set_field(self, "run", from_mapping(RunSettings, self.run, "job run"))
        if self.deidentify is not None:
            set_field(
                self,
                "deidentify",
                from_mapping(DeidentifySettings, self.deidentify, "job deidentify"),
            )

    def run_dir(self, run: MethodRun) -> str:
        return join(self.out, "runs", run.name)

    def archive_uri(self, today: date | None = None) -> str:
        """The archive the runs list: with ``since_days``, a DICOMweb archive filtered to the
        studies of the last ``since_days`` days (``StudyDate=<today - since_days>-``)."""
        from harmonize.io.dicomweb import with_study_date_since

        assert self.archive is not None  # load_job checked it
        if self.since_days is None:
            return self.archive
        return with_study_date_since(self.archive, self.since_days, today)


def load_job(uri: str, storage: Storage, *, needs_archive: bool = True) -> JobConfig:
    """The validated job YAML at ``uri`` (local or s3://): one line naming the file, the line
    and the key for anything wrong."""
    job = load_config(JobConfig, uri, storage, what="job")
    if needs_archive and not job.archive:
        raise ConfigError(f"{uri}: the job needs archive (the DICOM prefix to harmonize)")
    return job


def run_command(command: click.Command, argv: list[str] | None = None) -> None:
    """Run a click command like `harmonize` does: exit 2 with a one-line reason on bad input."""
    try:
        # Without standalone mode click returns ctx.exit(n)'s code instead of exiting.
        code = command.main(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
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
