"""What the command groups share: the URI, local-path and config parameter types, the storage
that ``--s3-endpoint`` points, and the option sets several commands take.

Every local path a user gives is made absolute here, once, with ``~`` expanded: the commands
hand paths to Ray workers and jobs whose working directories are their own. ``s3://`` (any
``scheme://``) URIs pass unchanged. Nothing heavy is imported: ``harmonize --help`` is instant.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from harmonize.experiments.config import EXECUTORS
from harmonize.experiments.packaged import config_names, config_path
from harmonize.models.registry import METHODS

if TYPE_CHECKING:
    from harmonize.io.storage import Storage

F = TypeVar("F", bound=Callable[..., Any])


def absolute(value: str) -> str:
    """A URI with a scheme (``s3://...``) as given; a local path absolute, ``~`` expanded."""
    if "://" in value:
        return value
    return os.path.abspath(os.path.expanduser(value))


class Uri(click.ParamType):
    """A local path (relative, absolute or ``~``; made absolute) or an ``s3://`` URI."""

    name = "uri"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return absolute(str(value))


class LocalPath(click.Path):
    """``click.Path`` (its existence and kind checks) on the absolute path, ``~`` expanded."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(absolute(os.fspath(value)), param, ctx)


class ConfigFile(click.ParamType):
    """A YAML config: a packaged config's name (its file inside the package), a local path
    (made absolute) or an s3:// URI."""

    name = "yaml"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text in config_names():
            return config_path(text)
        path = absolute(text)
        if "://" not in path and not os.path.exists(path) and not text.endswith((".yaml", ".yml")):
            self.fail(
                f'"{text}" is neither a packaged config ({", ".join(config_names())}) nor a file',
                param,
                ctx,
            )
        return path


class PositiveInts(click.ParamType):
    """Comma-separated positive integers (``512,1024``) as a tuple."""

    name = "n,n,..."

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        items = [item.strip() for item in str(value).split(",")]
        if not all(item.isdigit() and int(item) > 0 for item in items):
            self.fail(f'"{value}" is not a list of positive integers like 512,1024', param, ctx)
        return tuple(int(item) for item in items)


URI = Uri()
CONFIG = ConfigFile()
PACKAGED = ", ".join(config_names())  # for --help texts
METHOD_CHOICE = click.Choice(list(METHODS))
MODES = list(dict.fromkeys(mode for entry in METHODS.values() for mode in entry.modes))


def s3_endpoint(ctx: click.Context) -> str | None:
    """The root's ``--s3-endpoint`` (or $AWS_ENDPOINT_URL), None for AWS itself."""
    return ctx.find_root().params.get("s3_endpoint")


def storage(ctx: click.Context) -> Storage:
    """The storage of this command line: s3:// at ``--s3-endpoint``, retrying transient
    failures for ``--retry-seconds``."""
    from harmonize.io.retry import DEFAULT_RETRY_SECONDS
    from harmonize.io.storage import Storage

    retry = ctx.find_root().params.get("retry_seconds", DEFAULT_RETRY_SECONDS)
    return Storage(endpoint_url=s3_endpoint(ctx), retry_seconds=retry)


def options(decorators: list[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator applying the option ``decorators``, the first listed first in ``--help``."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def progress_option(default: bool = True) -> Callable[[F], F]:
    return click.option(
        "--progress/--no-progress", default=default, help="Show progress bars on stderr."
    )


def address_option(function: F) -> F:
    """--address of the commands that run on Ray here (train, run)."""
    return click.option(
        "--address",
        help="Ray cluster address [default: $RAY_ADDRESS, else a local Ray this command starts].",
    )(function)


def executor_option(
    default: str | None = "ray",
    help: str = "ray: a Ray Data stream (local Ray without --address); local: one process.",
) -> Callable[[F], F]:
    return click.option("--executor", type=click.Choice(EXECUTORS), default=default, help=help)


#: The options of every Ray Train command: where it trains, how long, resume, progress.
ray_train_options = options(
    [
        click.option(
            "--gpus",
            type=click.IntRange(0),
            default=0,
            help="GPUs to train on: one Ray Train worker (DDP rank) per GPU. Without "
            "--config, 0 trains the packaged CPU-sized config, N > 0 the published recipe.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1),
            help="CPU workers (DDP over gloo) when --gpus is 0 [default: 1].",
        ),
        click.option("--steps", type=click.IntRange(1), help="Override the config's steps."),
        address_option,
        click.option(
            "--resume/--no-resume",
            default=True,
            help="Continue from the latest checkpoint under --out; --no-resume deletes "
            "OUT/checkpoints/ and starts from step 0.",
        ),
        progress_option(),
    ]
)
