"""The root `harmonize` group, the command groups it holds, and ``main``: exit codes and
one-line reasons for whatever goes wrong."""

from __future__ import annotations

import sys

import click

from harmonize.cli import bench, experiment, report, run, submit, synth, train
from harmonize.errors import HarmonizeError
from harmonize.io.retry import DEFAULT_RETRY_SECONDS

EXIT_STATUS = """\b
Exit status:
  0    success
  1    a job followed with `submit ... --follow` failed; `run`: the run could not finish
  2    bad usage or input (a one-line reason on stderr)
  3, 4 `run` only: some objects, or all, ended as error rows (see `harmonize run --help`)
  130  interrupted"""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    epilog=EXIT_STATUS,
)
@click.option(
    "--s3-endpoint",
    envvar="AWS_ENDPOINT_URL",
    help="S3-compatible endpoint for s3:// URIs (default: $AWS_ENDPOINT_URL, else AWS).",
)
@click.option(
    "--retry-seconds",
    type=click.FloatRange(0),
    default=DEFAULT_RETRY_SECONDS,
    envvar="HARMONIZE_RETRY_SECONDS",
    help="How long each storage read or write waits out transient failures (connection "
    "refused, timeouts, 5xx, throttling) with back-off before the object becomes an error "
    "row marked transient; 0: no retry.",
)
@click.version_option(package_name="harmonize")
def cli(s3_endpoint: str | None, retry_seconds: float) -> None:
    """Harmonize the intensity distribution of radiographs across sites, at archive scale.

    Every URI may be a local path (relative, absolute or ~) or s3://bucket/prefix."""


for _command in (
    synth.synth,
    train.train,
    run.run,
    report.report,
    experiment.experiment,
    experiment.demo,
    bench.bench,
    submit.submit,
):
    cli.add_command(_command)


def _command_path(exc: click.UsageError) -> str:
    return exc.ctx.command_path if exc.ctx is not None else "harmonize"


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 on success, 2 with a one-line reason on bad usage or input (the
    other codes: ``EXIT_STATUS``)."""
    try:
        # Without standalone mode click returns ctx.exit(n)'s code instead of exiting.
        code = cli.main(args=argv, prog_name="harmonize", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help
        exc.show()
        sys.exit(2)
    except click.UsageError as exc:
        hint = f" (see `{_command_path(exc)} --help`)"
        click.echo(f"harmonize: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"harmonize: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except HarmonizeError as exc:
        click.echo(f"harmonize: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # python -m harmonize.cli.main (spawned workers import it, not run it)
    main()
