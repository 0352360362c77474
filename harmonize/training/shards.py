"""Training images decoded once into content-keyed shards (Arrow IPC files) on the cluster's
CPUs, so that no process ever decodes or holds a whole archive; ``ShardedImages``
(``harmonize.training.sharded_images``) reads them back one image at a time.

A shard holds the decoded uint16 images of up to ``shard_size`` consecutive objects of one group
("source", "target", ...): one record batch per image (``uri``, ``etag``, ``key``, ``height``,
``width``, ``pixels``: C-order little-endian bytes). Its schema metadata (JSON under
``b"harmonize"``) indexes every image, its unreadable objects and, where asked for, the sum of
its images' intensity histograms (``HIST_BINS`` bins each, as ``site_histogram`` averages them), so
that a reader learns all of that from the file's footer without
reading a pixel. A shard's URI names its objects' (uri, etag) pairs and the decoding settings by
hash: an existing shard is never rebuilt, and a changed archive rebuilds only the shards whose
objects changed.

Example::

    specs = plan_shards([(o.uri, o.etag) for o in objects], "target", settings, "s3://cache/x")
    summaries = prepare_shards(specs, decode, storage, settings, histogram_groups={"target"})
    images = ShardedImages([s.uri for s in summaries], storage)
    image = images[17]  # reads one record batch
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from harmonize.errors import ConfigError, HarmonizeError, StorageError
from harmonize.imaging.preprocess import from_uint16
from harmonize.io.retry import with_retries
from harmonize.io.storage import Storage, is_s3, join
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram

FORMAT = 1
METADATA_KEY = b"harmonize"
_IO_THREADS = 16  # for the existence checks and footers: latency-bound, not CPU-bound
SCHEMA_FIELDS = [
    ("uri", pa.string()),
    ("etag", pa.string()),
    ("key", pa.string()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("pixels", pa.binary()),
]

#: Object bytes -> (key, e.g. the SOPInstanceUID, or ""; a 2-D uint16 image); raises a
#: HarmonizeError for a bad object. Must pickle to reach Ray workers: a module-level function or
#: a ``functools.partial`` of one.
Decode = Callable[[bytes], tuple[str, np.ndarray]]


@dataclass(frozen=True)
class ShardSpec:
    """One shard to build: the ``index``-th of group ``name``, holding ``objects`` ((uri, etag)
    pairs, sorted); ``key`` hashes the objects and decoding settings and is part of ``uri``."""

    name: str
    index: int
    objects: tuple[tuple[str, str], ...]
    key: str
    uri: str


@dataclass(frozen=True)
class ShardSummary:
    """What a built (or found) shard holds: ``n_images`` images, ``errors`` ((uri, reason) of
    each object skipped), ``cached`` (it existed already) and the sum of its images' level
    intensity histograms (``HIST_BINS`` bins, each image's summing to 1) when it was built with
    one."""

    uri: str
    n_images: int
    errors: tuple[tuple[str, str], ...]
    cached: bool
    histogram: np.ndarray | None = field(default=None, compare=False)


#: Runs zero-argument shard builds (threads: ``run_in_threads``; Ray tasks:
#: ``harmonize.distributed.shards.ray_tasks``), yielding (position, summary) as each finishes.
ShardRunner = Callable[[Sequence[Callable[[], ShardSummary]]], Iterator[tuple[int, ShardSummary]]]


def shard_key(settings: Mapping[str, Any], objects: Sequence[tuple[str, str]]) -> str:
    """The first 16 hex digits of the SHA-256 of the settings and (uri, etag) pairs as JSON."""
    try:
        text = json.dumps({"settings": dict(settings), "objects": objects}, sort_keys=True)
    except TypeError as err:
        raise ConfigError(f"training shard settings must be JSON values: {err}") from err
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def plan_shards(
    objects: Sequence[tuple[str, str]],
    name: str,
    settings: Mapping[str, Any],
    folder_uri: str,
    shard_size: int = 256,
) -> list[ShardSpec]:
    """The shards of one group: ``objects`` ((uri, etag) pairs) sorted by URI and cut into
    consecutive chunks of ``shard_size``, each at ``folder_uri/{name}-{index:05d}-{key}.arrow``.

    An unchanged listing maps to the same URIs, so its shards are found, not rebuilt. A changed
    object (new etag) changes only its own shard's key and URI, and objects added after the last
    one (in URI order) only the last shard's, plus new shards; an object added or removed in the
    middle shifts the chunks after it, so those are rebuilt too.

    Raises:
        ConfigError: ``shard_size`` is below 1, or ``settings`` are not JSON values.
    """
    if shard_size < 1:
        raise ConfigError(f"shard_size must be at least 1, got {shard_size}")
    ordered = tuple(sorted((str(uri), str(etag)) for uri, etag in objects))
    specs = []
    for index, start in enumerate(range(0, len(ordered), shard_size)):
        chunk = ordered[start : start + shard_size]
        key = shard_key(settings, chunk)
        uri = join(folder_uri, f"{name}-{index:05d}-{key}.arrow")
        specs.append(ShardSpec(name, index, chunk, key, uri))
    return specs


# -- building ------------------------------------------------------------------------------------
def build_shard(
    spec: ShardSpec,
    decode: Decode,
    storage: Storage,
    settings: Mapping[str, Any],
    histogram: bool = False,
    workers: int = 1,
) -> ShardSummary:
    """Decode ``spec``'s objects (in ``workers`` threads) and write them as one shard, whole.

    A shard already at ``spec.uri`` is left as it is (only its footer is read: ``cached``),
    unless ``histogram`` is asked for and it has none. An object that cannot be read or decoded
    (a HarmonizeError), or that decodes to anything but a 2-D uint16 image, becomes an error
    entry and is skipped, never a failed shard.

    Raises:
        ConfigError: ``settings`` are not the ones ``spec.key`` was planned with.
        StorageError: the shard cannot be written, or what is at its URI is not a shard.
    """
    if shard_key(settings, spec.objects) != spec.key:
        raise ConfigError(
            f'shard "{spec.uri}" was planned with other settings than {dict(settings)}; plan '
            "the shards again with these settings"
        )
    found = _existing(spec, storage, histogram)
    if found is not None:
        return found

    def one(obj: tuple[str, str]) -> tuple[str, np.ndarray] | str:
        try:
            key, image = decode(storage.read(obj[0]))
        except HarmonizeError as err:
            return str(err)
        if not isinstance(image, np.ndarray):
            return f"it decoded to a {type(image).__name__}, not a 2-D uint16 image"
        if image.ndim != 2 or image.dtype != np.uint16:
            return f"it decoded to a {image.dtype} array of shape {image.shape}, not 2-D uint16"
        return str(key), np.ascontiguousarray(image, dtype="<u2")

    with ThreadPoolExecutor(max(1, min(workers, len(spec.objects)))) as pool:
        decoded = list(pool.map(one, spec.objects))
    pairs = list(zip(spec.objects, decoded, strict=True))
    images = [(obj, *value) for obj, value in pairs if not isinstance(value, str)]
    errors = tuple((obj[0], value) for obj, value in pairs if isinstance(value, str))
    levels = None
    if histogram:
        levels = np.zeros(HIST_BINS, dtype=np.float64)
        for *_, image in images:
            levels += intensity_histogram(from_uint16(image), bins=HIST_BINS)
    index = {
        "format": FORMAT,
        "shard_key": spec.key,
        "settings": dict(settings),
        "images": [[uri, etag, key, *image.shape] for (uri, etag), key, image in images],
        "errors": [list(e) for e in errors],
        "histogram": None if levels is None else levels.tolist(),
    }
    storage.write(spec.uri, _shard_bytes(index, images))
    return ShardSummary(spec.uri, len(images), errors, False, levels)


def _shard_bytes(index: dict[str, Any], images: list[Any]) -> bytes:
    metadata = json.dumps(index, separators=(",", ":")).encode("utf-8")
    schema = pa.schema(SCHEMA_FIELDS, metadata={METADATA_KEY: metadata})
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, schema) as writer:
        for (uri, etag), key, image in images:
            offsets = pa.py_buffer(np.array([0, image.nbytes], dtype=np.int32))
            pixels = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(image)])
            columns = [[uri], [etag], [key], [image.shape[0]], [image.shape[1]], pixels]
            writer.write_batch(pa.record_batch(columns, schema=schema))
    return bytes(sink.getvalue().to_pybytes())


def _existing(spec: ShardSpec, storage: Storage, histogram: bool) -> ShardSummary | None:
    """The summary of the shard at ``spec.uri`` from its footer; None when there is none yet,
    or it lacks the histogram asked for (then it is rebuilt)."""
    if not storage.exists(spec.uri):
        return None
    index = read_shard_index(spec.uri, storage)
    if index["shard_key"] != spec.key:
        raise StorageError(
            f'"{spec.uri}" holds shard {index["shard_key"]}, not {spec.key}; delete it and '
            "prepare the shards again"
        )
    if histogram and index["histogram"] is None:
        return None
    return _summary(spec.uri, index, cached=True)


def _summary(uri: str, index: Mapping[str, Any], cached: bool) -> ShardSummary:
    levels = index["histogram"]
    return ShardSummary(
        uri,
        len(index["images"]),
        tuple((str(u), str(reason)) for u, reason in index["errors"]),
        cached,
        None if levels is None else np.asarray(levels, dtype=np.float64),
    )


def run_in_threads(
    builds: Sequence[Callable[[], ShardSummary]],
) -> Iterator[tuple[int, ShardSummary]]:
    """A ``ShardRunner`` in this process: one thread per CPU, each building a shard at a time."""
    if not builds:
        return
    with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, len(builds)))) as pool:
        futures = {pool.submit(build): position for position, build in enumerate(builds)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def prepare_shards(
    specs: Sequence[ShardSpec],
    decode: Decode,
    storage: Storage,
    settings: Mapping[str, Any],
    *,
    histogram_groups: Collection[str] = (),
    runner: ShardRunner | None = None,
    progress: bool = True,
) -> list[ShardSummary]:
    """Build every shard not yet present (``build_shard``) and summarize all, in spec order.

    Existence is checked here first: shards found are reported ``cached`` and never handed to
    ``runner``. ``runner`` builds the others: None runs them in this process
    (``run_in_threads``, the CPUs shared between shards and their objects); the edge passes
    ``harmonize.distributed.shards.ray_tasks`` to decode on the cluster's CPUs instead (then
    ``decode`` must pickle). Shards of the groups in ``histogram_groups`` carry a histogram.
    """
    from tqdm import tqdm

    wanted = [spec.name in histogram_groups for spec in specs]
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        found = list(pool.map(lambda s, h: _existing(s, storage, h), specs, wanted))
    todo = [position for position, summary in enumerate(found) if summary is None]
    workers = 1 if runner else max(1, (os.cpu_count() or 1) // max(1, len(todo)))
    builds = [
        partial(build_shard, specs[p], decode, storage, settings, wanted[p], workers) for p in todo
    ]
    bar = tqdm(
        total=len(specs), initial=len(specs) - len(todo), desc="prepare shards",
        disable=not progress, leave=False,
    )  # fmt: skip
    with bar:
        for position, summary in (runner or run_in_threads)(builds):
            found[todo[position]] = summary
            bar.update()
    return [summary for summary in found if summary is not None]


# -- reading -------------------------------------------------------------------------------------
def open_shard(uri: str, storage: Storage) -> tuple[Any, dict[str, Any]]:
    """(an Arrow IPC file reader, the index) of one shard; reads only the file's footer. Each
    batch is then one ranged read (``pread`` of a local file, a ranged GET on S3) into memory of
    its own: a local shard is not memory-mapped, so the pages of the images a process has drawn
    do not pile up in its resident set as it draws more of a large archive."""
    fs, path = storage.filesystem(uri)

    def open_reader() -> Any:
        source = fs.open_input_file(path) if is_s3(uri) else pa.OSFile(path, "rb")
        try:
            return ipc.open_file(source)
        except pa.ArrowInvalid as err:
            raise StorageError(_not_a_shard(uri, f"it is not an Arrow IPC file ({err})")) from err

    reader = with_retries(open_reader, "open", uri, budget=storage.retry_seconds)
    metadata = (reader.schema.metadata or {}).get(METADATA_KEY, b"")
    try:
        index = json.loads(metadata)
        if not isinstance(index, dict) or "images" not in index:
            raise ValueError("no image index")
    except (TypeError, ValueError) as err:
        raise StorageError(_not_a_shard(uri, "it has no harmonize index")) from err
    if index.get("format") != FORMAT:
        raise StorageError(
            _not_a_shard(uri, f"its format is {index.get('format')!r}, this version reads {FORMAT}")
        )
    if len(index["images"]) != reader.num_record_batches:
        raise StorageError(_not_a_shard(uri, "its index does not match its record batches"))
    return reader, index


def _not_a_shard(uri: str, why: str) -> str:
    return f'"{uri}" is not a harmonize training shard: {why}; delete it and prepare it again'


def read_shard_index(uri: str, storage: Storage) -> dict[str, Any]:
    """The index of one shard (its schema metadata: format, shard_key, settings, images as
    [uri, etag, key, height, width], errors as [uri, reason], histogram or None), read from the
    footer alone.

    Raises:
        StorageError: the file cannot be read, or is not a harmonize shard.
    """
    return open_shard(uri, storage)[1]
