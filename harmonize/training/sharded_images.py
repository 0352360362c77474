"""The images of training shards (``harmonize.training.shards``) as one sequence that reads each
image only when it is drawn, its memory bounded by a buffer rather than by the archive.

Opening reads each shard's footer (every image's shape, key and object URI); ``images[i]`` then
reads one record batch: one ranged read (a local file's or an s3:// object's). An LRU buffer of
at most ``buffer_bytes`` keeps recently drawn images, so a process's memory is bounded by it,
not by the archive.

Example::

    images = ShardedImages([s.uri for s in summaries], storage)
    image = images[int(rng.integers(len(images)))]  # (H, W) uint16, read-only
"""

from __future__ import annotations

import bisect
import operator
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from typing import Any, SupportsIndex, overload

import numpy as np

from harmonize.errors import ConfigError, StorageError
from harmonize.io.retry import with_retries
from harmonize.io.storage import Storage, is_s3
from harmonize.training.shards import open_shard

DEFAULT_BUFFER_BYTES = 64 * 2**20
#: How many shards one reader keeps open at once (an open local shard holds a file descriptor).
MAX_OPEN_SHARDS = 64
#: Readers one open shard may have, so that a batch's draws from one shard are read at once: on
#: S3 each read is a ranged GET whose latency, not the CPU, is the cost; a local file's pread
#: is quick and one reader does.
S3_READERS_PER_SHARD = 4
_IO_THREADS = 16  # footers are read in parallel: latency-bound, not CPU-bound


class ShardedImages(Sequence[np.ndarray]):
    """The images of the shards at ``uris``, in order, as one sequence of read-only 2-D uint16
    arrays (copy one before changing it); a slice gives a list of them.

    It pickles without its open files and buffer, so it can travel to Ray workers, which reopen
    the shards they read from.

    Args:
        uris: shard URIs (``ShardSummary.uri``), in the order their images should have.
        storage: where they are.
        buffer_bytes: the most bytes of recently drawn images kept (0: none).

    Raises:
        StorageError: a shard cannot be read or is not a harmonize shard.
    """

    def __init__(
        self, uris: Sequence[str], storage: Storage, buffer_bytes: int = DEFAULT_BUFFER_BYTES
    ) -> None:
        if buffer_bytes < 0:
            raise ConfigError(f"buffer_bytes must be 0 or more, got {buffer_bytes}")
        self._shard_uris = [str(uri) for uri in uris]
        self._storage = storage
        self.buffer_bytes = buffer_bytes
        with ThreadPoolExecutor(max(1, min(_IO_THREADS, len(self._shard_uris)))) as pool:
            opened = list(pool.map(lambda uri: open_shard(uri, storage), self._shard_uris))
        indexes = [index for _, index in opened]
        entries = [entry for index in indexes for entry in index["images"]]
        self._starts = list(accumulate((len(index["images"]) for index in indexes), initial=0))
        self._uris = [str(entry[0]) for entry in entries]
        self._keys = [str(entry[2]) for entry in entries]
        self._shapes = [(int(entry[3]), int(entry[4])) for entry in entries]
        self._errors = [(str(u), str(why)) for index in indexes for u, why in index["errors"]]
        levels = [index["histogram"] for index in indexes]
        self._histogram = (
            None
            if not levels or any(h is None for h in levels)
            else np.sum([np.asarray(h, dtype=np.float64) for h in levels], axis=0)
        )
        self._reset()
        for shard, (reader, _) in list(enumerate(opened))[:MAX_OPEN_SHARDS]:
            self._readers[shard] = [(reader, threading.Lock())]

    def _reset(self) -> None:
        self._lock = threading.Lock()
        # Per open shard, its readers, each read by one thread at a time (its lock).
        self._readers: OrderedDict[int, list[tuple[Any, threading.Lock]]] = OrderedDict()
        self._buffer: OrderedDict[int, np.ndarray] = OrderedDict()
        self._buffered_bytes = 0

    def __getstate__(self) -> dict[str, Any]:
        # Open files, locks and buffered images stay behind; the shards reopen where it lands.
        state = dict(self.__dict__)
        for name in ("_lock", "_readers", "_buffer", "_buffered_bytes"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def __repr__(self) -> str:
        return f"ShardedImages({len(self)} images in {len(self._shard_uris)} shards)"

    # -- what the footers said ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def shard_uris(self) -> list[str]:
        """The shards, in the order their images have here."""
        return list(self._shard_uris)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(height, width) of every image, in order."""
        return list(self._shapes)

    @property
    def keys(self) -> list[str]:
        """Every image's key (e.g. its SOPInstanceUID; "" where the decoder gave none)."""
        return list(self._keys)

    @property
    def uris(self) -> list[str]:
        """The URI of the object every image was decoded from."""
        return list(self._uris)

    @property
    def errors(self) -> list[tuple[str, str]]:
        """(uri, reason) of every object the shards skipped."""
        return list(self._errors)

    def histogram(self) -> np.ndarray | None:
        """The mean of the images' intensity histograms (``HIST_BINS`` bins, as
        ``training.validate.site_histogram`` computes it), from the shards' footers; None when a
        shard was built without one."""
        if self._histogram is None or not len(self):
            return None
        return self._histogram / len(self)

    # -- images ------------------------------------------------------------------------------------
    @overload
    def __getitem__(self, index: SupportsIndex) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"image index {index} is out of range for {n} images")
        with self._lock:
            image = self._buffer.get(i)
            if image is not None:
                self._buffer.move_to_end(i)
                return image
        image = self._read(i)
        self._keep(i, image)
        return image

    def fetch(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The images at ``indices`` (as ``self[i]`` each), those not in the buffer read in
        parallel: a batch's draws cost about one read's latency, not one per image (what
        matters when the shards are on S3 and the accelerator waits)."""
        n = len(self)
        with self._lock:
            missing = sorted({i for i in indices if 0 <= i < n and i not in self._buffer})
        read: dict[int, np.ndarray] = {}
        if len(missing) > 1:
            with ThreadPoolExecutor(min(_IO_THREADS, len(missing))) as pool:
                read = dict(zip(missing, pool.map(self._read, missing), strict=True))
            for i, image in read.items():
                self._keep(i, image)
        return [read[i] if i in read else self[i] for i in indices]

    def _read(self, i: int) -> np.ndarray:
        shard = bisect.bisect_right(self._starts, i) - 1
        row, uri = i - self._starts[shard], self._shard_uris[shard]

        def read_batch() -> Any:
            reader, lock = self._reader(shard)  # held: one batch at a time per reader
            try:
                return reader.get_batch(row)
            finally:
                lock.release()

        batch = with_retries(read_batch, "read", uri, budget=self._storage.retry_seconds)
        height, width = self._shapes[i]
        column = batch.column("pixels")
        _, offsets, data = column.buffers()  # views of the batch: no copy (a scalar's would copy)
        start, end = np.frombuffer(offsets, dtype="<i4")[column.offset : column.offset + 2]
        pixels = data.slice(int(start), int(end - start))
        if pixels.size != height * width * 2:
            raise StorageError(
                f'image {row} of shard "{uri}" has {pixels.size} bytes of pixels, not '
                f"{height} x {width} x 2; delete the shard and prepare it again"
            )
        return np.frombuffer(pixels, dtype="<u2").reshape(height, width)

    def _reader(self, shard: int) -> tuple[Any, threading.Lock]:
        """A reader of ``shard`` and its lock, acquired: a free one, else a new one while the
        shard has fewer than its share (``S3_READERS_PER_SHARD`` on S3, else 1), else the first,
        once free."""
        uri = self._shard_uris[shard]
        with self._lock:
            readers = self._readers.get(shard, [])
            if readers:
                self._readers.move_to_end(shard)
            for reader, lock in readers:
                if lock.acquire(blocking=False):
                    return reader, lock
            share = S3_READERS_PER_SHARD if is_s3(uri) else 1
            full = len(readers) >= share
            if full:
                reader, lock = readers[0]
        if full:  # wait for the first, outside the buffer's lock
            lock.acquire()
            return reader, lock
        reader, _ = open_shard(uri, self._storage)
        lock = threading.Lock()
        lock.acquire()
        with self._lock:
            self._readers.setdefault(shard, []).append((reader, lock))
            while len(self._readers) > MAX_OPEN_SHARDS:
                self._readers.popitem(last=False)
        return reader, lock

    def _keep(self, i: int, image: np.ndarray) -> None:
        if image.nbytes > self.buffer_bytes:
            return
        with self._lock:
            if i in self._buffer:
                return
            self._buffer[i] = image
            self._buffered_bytes += image.nbytes
            while self._buffered_bytes > self.buffer_bytes:
                _, dropped = self._buffer.popitem(last=False)
                self._buffered_bytes -= dropped.nbytes


class ImageRows:
    """Some images of a ``ShardedImages`` (at ``positions``, all ``size`` x ``size``), indexed
    like an (N, size, size) uint16 array: ``rows[i]`` is one image, ``rows[indices]`` (an
    integer array or a slice) stacks those images into a new array. What the classifier trains
    from: it reads only the images a batch draws.
    """

    def __init__(self, images: ShardedImages, positions: Sequence[int], size: int) -> None:
        self.images, self.positions = images, np.asarray(positions, dtype=np.int64)
        wrong = [images.shapes[p] for p in self.positions if images.shapes[p] != (size, size)]
        if wrong:
            raise ConfigError(
                f"classifier images must be {size} x {size}, the shards hold {wrong[0]}; prepare "
                "them again at this input size"
            )
        self.shape = (len(self.positions), size, size)

    ndim = 3
    dtype = np.dtype(np.uint16)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: SupportsIndex | slice | np.ndarray) -> np.ndarray:
        if isinstance(index, slice | np.ndarray | list):
            picked = self.positions[index]
            empty = np.empty((0, *self.shape[1:]), dtype=np.uint16)
            return np.stack([self.images[int(p)] for p in picked]) if len(picked) else empty
        return self.images[int(self.positions[operator.index(index)])]
