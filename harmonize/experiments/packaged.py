"""The training configs that ship inside the package (``harmonize/experiments/configs/``):
their names, and a name resolved to a file that ``load_config`` reads.

They are package data found with importlib.resources, so an installed wheel has them wherever it
runs: ``harmonize train cyclegan --config cyclegan-cpu-quick`` works from any folder. A wheel is
installed as plain files, so a config's location is a readable local path. Listing the names
imports nothing heavy (the command line's ``--help`` lists them).

Example::

    config_names()                     # ['classifier-cpu-quick', 'cyclegan-cpu-quick', ...]
    config_path("cyclegan-cpu-quick")  # '/.../harmonize/experiments/configs/cyclegan-...'
    resolve_config("s3://cfg/a.yaml")  # not a packaged name: as given
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from harmonize.errors import ConfigError

SUFFIX = ".yaml"
CPU_QUICK = "{}-cpu-quick"  # the CPU-sized config of a method (or of the classifier)


def _folder() -> Traversable:
    return files("harmonize.experiments") / "configs"


def config_names() -> list[str]:
    """The packaged configs' names (file names without ``.yaml``), sorted."""
    return sorted(
        entry.name.removesuffix(SUFFIX)
        for entry in _folder().iterdir()
        if entry.name.endswith(SUFFIX)
    )


def config_path(name: str) -> str:
    """The local path of the packaged config ``name``.

    Raises:
        ConfigError: no packaged config has that name (the message lists those there are).
    """
    names = config_names()
    if name not in names:
        raise ConfigError(f'no packaged config "{name}"; the packaged configs: {", ".join(names)}')
    return str(_folder() / f"{name}{SUFFIX}")


def cpu_quick_name(what: str) -> str:
    """The name of the CPU-sized config of ``what`` (a neural method or ``classifier``)."""
    return CPU_QUICK.format(what)


def resolve_config(value: str) -> str:
    """``value``'s path when it names a packaged config; anything else (a path, an s3:// URI)
    as given."""
    return config_path(value) if value in config_names() else value
