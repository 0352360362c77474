"""`harmonize submit`'s --gpus becomes the job command's --gpus (train) or --actors (run);
submitting and following real jobs is tested in tests/distributed/test_jobs.py."""

from __future__ import annotations

import click
import pytest

from harmonize.cli.submit import with_gpus


def test_gpus_pass_on_as_the_commands_own_option() -> None:
    assert with_gpus("train", ("cyclegan",), 8) == ["cyclegan", "--gpus", "8"]
    assert with_gpus("train", ("cyclegan",), 0) == ["cyclegan", "--gpus", "0"]
    assert with_gpus("run", ("--method", "nyul"), 4) == ["--method", "nyul", "--actors", "4"]
    assert with_gpus("run", ("--method", "nyul"), 0) == ["--method", "nyul"]  # CPU tasks
    assert with_gpus("report", ("m",), None) == ["m"]
    with pytest.raises(click.UsageError, match="report uses no GPU"):
        with_gpus("report", ("m",), 1)
    with pytest.raises(click.UsageError, match="not also --actors"):
        with_gpus("run", ("--actors=2",), 4)
