"""The streaming run on Ray Data: decode on CPU tasks → harmonizer actor pool → encode/write tasks.

    rows (one per object) ─ read_and_decode (CPU tasks) ─► HarmonizeActor pool (GPU when present:
    harmonize, SSIM, histograms) ─► encode_and_write (CPU tasks) ─► manifest rows to the driver

The stages are the plain functions of ``harmonize.pipeline``; this module only wires them into
Ray. Blocks are Arrow tables with an explicit schema (manifest columns + binary payloads), so a
stage where every object failed still produces well-typed blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from harmonize.distributed import init_ray
from harmonize.manifest import SCHEMA
from harmonize.methods import load_model
from harmonize.pipeline import (
    PAYLOAD,
    RunSpec,
    encode_and_write,
    harmonize_and_measure,
    read_and_decode,
)
from harmonize.run import RunOptions
from harmonize.storage import Storage

STREAM_SCHEMA = pa.schema([*SCHEMA, *[pa.field(k, pa.large_binary()) for k in PAYLOAD]])
_MAX_BLOCKS = 2000  # enough parallelism for a cluster, few enough blocks to schedule cheaply


def _table(rows: list[dict[str, Any]], schema: pa.Schema = STREAM_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)


def _decode_batch(batch: pa.Table, storage: Storage) -> pa.Table:
    return _table([read_and_decode(row, storage) for row in batch.to_pylist()])


def _encode_batch(batch: pa.Table, spec: RunSpec, storage: Storage) -> pa.Table:
    return _table([encode_and_write(r, spec, storage) for r in batch.to_pylist()], SCHEMA)


class HarmonizeActor:
    """Loads the model once per actor and harmonizes + measures each batch (Ray's predictor
    pattern). Torch uses as many threads as the actor was given CPUs."""

    def __init__(self, model_uri: str, method: str, storage: Storage, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.harmonizer = load_model(model_uri, storage, expected_method=method).harmonizer

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        with torch.inference_mode():
            return _table([harmonize_and_measure(r, self.harmonizer) for r in batch.to_pylist()])


def stream_rows(
    rows: list[dict[str, Any]], spec: RunSpec, storage: Storage, options: RunOptions
) -> Iterator[dict[str, Any]]:
    """Run the three stages over ``rows`` on Ray; yields finished manifest rows as they arrive
    (in no particular order)."""
    ray = init_ray(options.ray_address)
    from ray.data import ActorPoolStrategy

    from ray.data import DataContext

    if options.object_store_mib:
        execution = DataContext.get_current().execution_options
        execution.resource_limits = execution.resource_limits.copy(
            object_store_memory=options.object_store_mib * 2**20
        )
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = min(options.actors, gpus) if gpus else options.actors
    n_blocks = min(len(rows), _MAX_BLOCKS)
    step = -(-len(rows) // n_blocks)
    blocks = [_table(rows[i : i + step]) for i in range(0, len(rows), step)]
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(
        _decode_batch,
        fn_kwargs={"storage": storage},
        batch_format="pyarrow",
        batch_size=1,
        num_cpus=1,
    )
    ds = ds.map_batches(
        HarmonizeActor,
        fn_constructor_kwargs={
            "model_uri": spec.model_uri,
            "method": spec.method,
            "storage": storage,
            "threads": 1,
        },
        compute=ActorPoolStrategy(size=max(1, actors)),
        batch_format="pyarrow",
        batch_size=options.batch_size,
        num_gpus=1 if gpus else 0,
        num_cpus=0.5,
    )
    ds = ds.map_batches(
        _encode_batch,
        fn_kwargs={"spec": spec, "storage": storage},
        batch_format="pyarrow",
        batch_size=1,
        num_cpus=1,
    )
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from batch.to_pylist()
