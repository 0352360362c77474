"""The Ray session: connect to a cluster or start a local Ray owned by this process."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Local Ray on small machines: no usage stats upload, no token auth on loopback, fast Train
# health checks. Set before Ray is imported; a cluster's own environment wins (setdefault).
RAY_ENV_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
    "RAY_TRAIN_V2_ENABLED": "1",
}


def ray_address(address: str | None = None) -> str | None:
    """What ``ray.init`` is given: ``address``; else None when ``RAY_ADDRESS`` is set (inside a
    Ray Job, or where a user set it: Ray reads it); else ``"local"``, a new Ray owned by this
    process. Never Ray's own default, which joins whichever cluster ``ray start`` left running on
    this machine (on a shared machine, a stranger's)."""
    if address:
        return address
    return None if os.environ.get("RAY_ADDRESS") else "local"


def ray_is_running() -> bool:
    """Whether this process is already connected to Ray (without importing it needlessly)."""
    import sys

    return "ray" in sys.modules and bool(sys.modules["ray"].is_initialized())


def init_ray(address: str | None = None, *, quiet: bool = True) -> Any:
    """Connect to the Ray cluster at ``address`` (see ``ray_address``) or start a local Ray of
    this process's own; reuse a live session."""
    for key, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        ray.init(
            address=ray_address(address),
            include_dashboard=False,
            logging_level=logging.WARNING if quiet else logging.INFO,
            log_to_driver=not quiet,
        )
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar over finished objects
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # It warns that the progress bars it was just told to disable are disabled.
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    return ray


@contextmanager
def ray_session(address: str | None = None, *, quiet: bool = True) -> Iterator[Any]:
    """``init_ray`` for a ``with`` block: on exit, shut Ray down only if this block started it
    (a session the caller, a test or a Ray Job already had is left alone)."""
    started = not ray_is_running()
    ray = init_ray(address, quiet=quiet)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
