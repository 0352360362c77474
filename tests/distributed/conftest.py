"""Fixtures of the distributed tests: a real Ray head with the Jobs API on 127.0.0.1 (its own
temp dir and ports)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ray_heads import ray_head as start_ray_head


@pytest.fixture(scope="session")
def ray_head() -> Iterator[str]:
    """A Ray head with the dashboard (Jobs API) on 127.0.0.1, shared by the tests of Ray Jobs;
    yields its http:// address."""
    with start_ray_head(dashboard=True) as url:
        yield url
