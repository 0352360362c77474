"""The streaming run on Ray Data: decode on CPU tasks → harmonize + measure → encode/write tasks.

    rows (one per object) ─ read_objects + decode_objects ─► harmonize_and_measure_batch
                          (+ scores) ─► encode_and_write ─► manifest rows (driver)

The stages are the plain functions of ``harmonize.run.stages``; this module only wires them into
Ray, as an executor with the interface of ``harmonize.run.local.LocalExecutor``. The harmonize
stage runs in one of two ways:

- an actor pool (Ray's predictor pattern: the model is loaded once per actor), one actor per GPU
  when the cluster has GPUs, or of ``--actors N`` when asked for; decode and encode stay on CPU
  tasks, so the accelerator never waits for a decoder;
- without GPUs and without ``--actors``: plain CPU tasks, each process keeping the loaded model
  in a small cache. Ray fuses the three stages into one task per block, so pixels never leave the
  process that decoded them, every core works, and no actor has to start (which costs seconds).

GPU decode (``gpu_decode``; auto: on when the actors hold GPUs): the CPU stage reads every object
but decodes only those whose transfer syntax no GPU decodes (``gpu_decode.may_decode_on_gpu``, a
peek at the file meta); the others travel as their own bytes (``stages.undecoded``: no
``decoder`` yet) to the actor, which decodes all of a batch's in one call (on its GPU through
nvImageCodec, else on its CPU per object) before harmonizing them. The manifest's ``decoder``
column says which decoded each object.

Blocks are Arrow tables with an explicit schema (manifest columns + binary payloads), so a stage
where every object failed still produces well-typed blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pyarrow as pa

from harmonize.dicom.gpu_decode import may_decode_on_gpu
from harmonize.distributed.session import init_ray, ray_session
from harmonize.errors import ConfigError
from harmonize.io.manifest import SCHEMA
from harmonize.io.storage import Storage
from harmonize.methods.base import Harmonizer
from harmonize.run.local import LocalExecutor
from harmonize.run.orchestrate import Executor
from harmonize.run.spec import RunSpec
from harmonize.run.stages import (
    PAYLOAD,
    Scorer,
    decode_objects,
    encode_and_write,
    harmonize_and_measure_batch,
    load_checked,
    mark_failed,
    read_objects,
    undecoded,
)

STREAM_SCHEMA = pa.schema([*SCHEMA, *[pa.field(k, pa.large_binary()) for k in PAYLOAD]])
_MAX_BLOCKS = 10_000  # enough parallelism for a cluster, few enough blocks to schedule cheaply

# The run's model (and classifier), loaded once per worker process and checked.
_loaded = lru_cache(maxsize=2)(load_checked)


def _table(rows: list[dict[str, Any]], schema: pa.Schema = STREAM_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)


def _harmonize_rows(
    rows: list[dict[str, Any]], harmonizer: Harmonizer, classifier: Scorer | None
) -> pa.Table:
    import torch

    with torch.inference_mode():
        return _table(harmonize_and_measure_batch(rows, harmonizer, classifier))


def _decode_batch(
    batch: pa.Table, spec: RunSpec, storage: Storage, leave_to_gpu: bool = False
) -> pa.Table:
    """Read every object of the block and decode them in one batch, except (``leave_to_gpu``)
    those a GPU may decode: they go on undecoded, to the harmonize actor that holds it."""
    rows = read_objects(batch.to_pylist(), storage)
    if leave_to_gpu:
        decode_objects(
            [r for r in rows if not (undecoded(r) and may_decode_on_gpu(r["pixels"]))], spec
        )
    else:
        decode_objects(rows, spec)
    return _table(rows)


def _decode_left(rows: list[dict[str, Any]], spec: RunSpec) -> list[dict[str, Any]]:
    """Decode, in one batch, the rows the CPU stage left undecoded: on this process's GPU when
    it has one and nvImageCodec, else on its CPU per object."""
    decode_objects([r for r in rows if undecoded(r)], spec)
    return rows


def _harmonize_batch(batch: pa.Table, spec: RunSpec, storage: Storage) -> pa.Table:
    rows = _decode_left(batch.to_pylist(), spec)
    try:
        harmonizer, classifier = _loaded(spec, storage)
    except Exception as err:  # noqa: BLE001 - the rows say why instead of a crashed run
        return _table([mark_failed(r, "harmonize", err) for r in rows])
    return _harmonize_rows(rows, harmonizer, classifier)


def _encode_batch(batch: pa.Table, spec: RunSpec, storage: Storage) -> pa.Table:
    return _table([encode_and_write(r, spec, storage) for r in batch.to_pylist()], SCHEMA)


class HarmonizeActor:
    """Loads the model (and classifier) once per actor and harmonizes, scores and measures each
    batch (Ray's predictor pattern), on the actor's GPU when it has one; first it decodes, in
    one call, the batch's objects the CPU stage left to it (GPU decode)."""

    def __init__(self, spec: RunSpec, storage: Storage) -> None:
        self.spec = spec
        self.harmonizer, self.classifier = _loaded(spec, storage)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = _decode_left(batch.to_pylist(), self.spec)
        return _harmonize_rows(rows, self.harmonizer, self.classifier)


@dataclass
class RayStreamExecutor:
    """Runs a run's stages as one Ray Data stream on the cluster at ``address`` (local Ray
    without one).

    Args:
        address: Ray cluster address (None: ``init_ray``'s default, a local Ray).
        actors: harmonizer actor-pool size; None: one actor per GPU, or CPU tasks without GPUs.
        batch_size: images per Ray Data block and per harmonizer call.
        object_store_mib: Ray Data's budget for blocks in flight (decoded pixels waiting for the
            harmonizer, ...): bounds memory however large the archive; None lets Ray use its
            object store share.
        gpu_decode: leave the objects a GPU may decode (JPEG 2000, HTJ2K, JPEG) to the
            harmonize actors, which decode each batch's in one call on their GPU; None (auto):
            when the actors hold GPUs. Without actors it does nothing (CPU tasks decode and
            harmonize in one process anyway).
    """

    address: str | None = None
    actors: int | None = None
    batch_size: int = 8
    object_store_mib: int | None = 1024
    gpu_decode: bool | None = None
    name = "ray"
    _session: ExitStack = field(default_factory=ExitStack, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.actors is not None and self.actors < 1) or self.batch_size < 1:
            raise ConfigError("actors and batch_size must be >= 1")

    def __enter__(self) -> RayStreamExecutor:
        self._session.enter_context(ray_session(self.address))
        return self

    def __exit__(self, *exc: object) -> None:
        self._session.close()

    def rows(
        self, todo: list[dict[str, Any]], spec: RunSpec, storage: Storage
    ) -> Iterator[dict[str, Any]]:
        """Run the three stages over ``todo`` on Ray; yields finished manifest rows as they
        arrive (in no particular order)."""
        ray = init_ray(self.address)
        from ray.data import ActorPoolStrategy, DataContext

        if self.object_store_mib:
            execution = DataContext.get_current().execution_options
            execution.resource_limits = execution.resource_limits.copy(
                object_store_memory=self.object_store_mib * 2**20
            )
        gpus = int(ray.cluster_resources().get("GPU", 0))
        actors = self.actors or gpus  # 0: CPU tasks
        n_blocks = min(-(-len(todo) // self.batch_size), _MAX_BLOCKS)
        step = -(-len(todo) // n_blocks)
        ds = ray.data.from_arrow([_table(todo[i : i + step]) for i in range(0, len(todo), step)])
        cpu_stage: dict[str, Any] = {"batch_format": "pyarrow", "batch_size": None, "num_cpus": 1}
        leave_to_gpu = bool(actors) and (bool(gpus) if self.gpu_decode is None else self.gpu_decode)
        ds = ds.map_batches(
            _decode_batch,
            fn_kwargs={"spec": spec, "storage": storage, "leave_to_gpu": leave_to_gpu},
            **cpu_stage,
        )
        if actors:
            ds = ds.map_batches(
                HarmonizeActor,
                fn_constructor_kwargs={"spec": spec, "storage": storage},
                compute=ActorPoolStrategy(size=actors),
                batch_format="pyarrow",
                batch_size=self.batch_size,
                num_gpus=1 if gpus else 0,
                num_cpus=0.5,  # the actor mostly waits on its GPU; leave the cores to the decoders
            )
        else:
            ds = ds.map_batches(
                _harmonize_batch, fn_kwargs={"spec": spec, "storage": storage}, **cpu_stage
            )
        ds = ds.map_batches(
            _encode_batch, fn_kwargs={"spec": spec, "storage": storage}, **cpu_stage
        )
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            yield from batch.to_pylist()


def make_executor(
    executor: str = "ray",
    *,
    address: str | None = None,
    actors: int | None = None,
    batch_size: int = 8,
    object_store_mib: int | None = 1024,
    gpu_decode: bool | None = None,
) -> Executor:
    """The executor a command line or job names (``--executor``, ``--address``, ``--actors``,
    ``--batch-size``, ``--gpu-decode``): ``ray``, the Ray Data stream, or ``local``, one process
    (which takes only ``batch_size``; it decodes on a GPU whenever this process can).

    Example::

        run_harmonization(..., executor=make_executor("ray", actors=2))
    """
    if executor == "local":
        return LocalExecutor(batch_size)
    if executor == "ray":
        return RayStreamExecutor(
            address,
            actors,
            batch_size,
            object_store_mib=object_store_mib,
            gpu_decode=gpu_decode,
        )
    raise ConfigError(f'executor must be "ray" or "local", got "{executor}"')
