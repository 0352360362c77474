"""Training shards built as Ray tasks: one task per shard, spread over the cluster's CPUs, so that
decoding runs where the CPUs are and never in the driver.

Example::

    summaries = prepare_shards(specs, decode, storage, settings, runner=ray_tasks)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from harmonize.training.shards import ShardSummary


def ray_tasks(builds: Sequence[Callable[[], ShardSummary]]) -> Iterator[tuple[int, ShardSummary]]:
    """A ``ShardRunner`` on the Ray cluster this process is connected to: each build one task
    (1 CPU, retried 3 times if its worker dies), yielded as it finishes. The builds must pickle
    (``functools.partial`` of ``build_shard`` with a module-level ``decode``)."""
    import ray

    if not builds:
        return
    task = ray.remote(num_cpus=1, max_retries=3)(_build).options(scheduling_strategy="SPREAD")
    positions = {task.remote(build): position for position, build in enumerate(builds)}
    pending = list(positions)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield positions[done[0]], ray.get(done[0])


def _build(build: Callable[[], ShardSummary]) -> ShardSummary:
    return build()
