"""The streaming run on Ray Data: decode on CPU tasks → harmonize + measure → encode/write tasks.

    rows (one per object) ─ read_and_decode ─► harmonize_and_measure (+ scores) ─► encode_and_write
                                                                       ─► manifest rows (driver)

The stages are the plain functions of ``harmonize.pipeline``; this module only wires them into
Ray. The harmonize stage runs in one of two ways:

- an actor pool (Ray's predictor pattern: the model is loaded once per actor), one actor per GPU
  when the cluster has GPUs, or of ``--actors N`` when asked for; decode and encode stay on CPU
  tasks, so the accelerator never waits for a decoder;
- without GPUs and without ``--actors``: plain CPU tasks, each process keeping the loaded model
  in a small cache. Ray fuses the three stages into one task per block, so pixels never leave the
  process that decoded them, every core works, and no actor has to start (which costs seconds).

Blocks are Arrow tables with an explicit schema (manifest columns + binary payloads), so a stage
where every object failed still produces well-typed blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import pyarrow as pa

from harmonize.distributed.session import init_ray
from harmonize.errors import ModelError
from harmonize.io.manifest import SCHEMA
from harmonize.io.storage import Storage
from harmonize.methods.base import Harmonizer
from harmonize.models.registry import load_model
from harmonize.pipeline import (
    PAYLOAD,
    RunSpec,
    Scorer,
    encode_and_write,
    harmonize_and_measure_batch,
    mark_failed,
    read_and_decode,
)
from harmonize.run import RunOptions, load_run_classifier

STREAM_SCHEMA = pa.schema([*SCHEMA, *[pa.field(k, pa.large_binary()) for k in PAYLOAD]])
_MAX_BLOCKS = 10_000  # enough parallelism for a cluster, few enough blocks to schedule cheaply


def _table(rows: list[dict[str, Any]], schema: pa.Schema = STREAM_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)


@lru_cache(maxsize=2)
def _load_checked(spec: RunSpec, storage: Storage) -> tuple[Harmonizer, Scorer | None]:
    """The run's model (and classifier), loaded once per process and checked to be the ones the
    run planned with (a model rewritten under the same URI mid-run must not mix into one
    config_hash)."""
    model = load_model(spec.model_uri, storage, expected_method=spec.method, mode=spec.mode)
    if model.model_hash != spec.model_hash:
        raise ModelError(
            f'the model at "{spec.model_uri}" changed during run {spec.run_id} '
            f"(hash {model.model_hash}, planned {spec.model_hash}); start a new run"
        )
    return model.harmonizer, load_run_classifier(spec, storage)


def _harmonize_rows(
    rows: list[dict[str, Any]], harmonizer: Harmonizer, classifier: Scorer | None
) -> pa.Table:
    import torch

    with torch.inference_mode():
        return _table(harmonize_and_measure_batch(rows, harmonizer, classifier))


def _decode_batch(batch: pa.Table, storage: Storage) -> pa.Table:
    return _table([read_and_decode(row, storage) for row in batch.to_pylist()])


def _harmonize_batch(batch: pa.Table, spec: RunSpec, storage: Storage) -> pa.Table:
    rows = batch.to_pylist()
    try:
        harmonizer, classifier = _load_checked(spec, storage)
    except Exception as err:  # noqa: BLE001 - the rows say why instead of a crashed run
        failed = [mark_failed(r, "harmonize", err) if r["status"] == "ok" else r for r in rows]
        return _table(failed)
    return _harmonize_rows(rows, harmonizer, classifier)


def _encode_batch(batch: pa.Table, spec: RunSpec, storage: Storage) -> pa.Table:
    return _table([encode_and_write(r, spec, storage) for r in batch.to_pylist()], SCHEMA)


class HarmonizeActor:
    """Loads the model (and classifier) once per actor and harmonizes, scores and measures each
    batch (Ray's predictor pattern), on the actor's GPU when it has one."""

    def __init__(self, spec: RunSpec, storage: Storage) -> None:
        self.harmonizer, self.classifier = _load_checked(spec, storage)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _harmonize_rows(batch.to_pylist(), self.harmonizer, self.classifier)


def stream_rows(
    rows: list[dict[str, Any]], spec: RunSpec, storage: Storage, options: RunOptions
) -> Iterator[dict[str, Any]]:
    """Run the three stages over ``rows`` on Ray; yields finished manifest rows as they arrive
    (in no particular order)."""
    ray = init_ray(options.ray_address)
    from ray.data import ActorPoolStrategy, DataContext

    if options.object_store_mib:
        execution = DataContext.get_current().execution_options
        execution.resource_limits = execution.resource_limits.copy(
            object_store_memory=options.object_store_mib * 2**20
        )
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = options.actors or gpus  # 0: CPU tasks
    per_block = options.batch_size
    n_blocks = min(-(-len(rows) // per_block), _MAX_BLOCKS)
    step = -(-len(rows) // n_blocks)
    ds = ray.data.from_arrow([_table(rows[i : i + step]) for i in range(0, len(rows), step)])
    cpu_stage: dict[str, Any] = {"batch_format": "pyarrow", "batch_size": None, "num_cpus": 1}
    ds = ds.map_batches(_decode_batch, fn_kwargs={"storage": storage}, **cpu_stage)
    if actors:
        ds = ds.map_batches(
            HarmonizeActor,
            fn_constructor_kwargs={"spec": spec, "storage": storage},
            compute=ActorPoolStrategy(size=actors),
            batch_format="pyarrow",
            batch_size=options.batch_size,
            num_gpus=1 if gpus else 0,
            num_cpus=0.5,  # the actor mostly waits on its GPU; leave the cores to the decoders
        )
    else:
        ds = ds.map_batches(
            _harmonize_batch, fn_kwargs={"spec": spec, "storage": storage}, **cpu_stage
        )
    ds = ds.map_batches(_encode_batch, fn_kwargs={"spec": spec, "storage": storage}, **cpu_stage)
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from batch.to_pylist()
