"""One training job: what to train (a GAN or the classifier), from which two inputs, and its
decoded data, cached once under ``OUT/cache/`` for every process that trains it.

The decoded data is keyed by a hash of the inputs' listings (URIs + ETags; the classifier's
labels too) and the image size, so a rerun on unchanged archives skips decoding, and a changed
archive can never reuse a stale cache. The data is sharded: ``OUT/cache/<name>/`` holds
content-keyed shards (built by a ``ShardRunner``: Ray tasks from the distributed driver) and
``OUT/cache/<name>-<key>.json`` indexes those of one listing (``training-data`` for a GAN,
``classifier-data`` for the classifier), so a changed archive rebuilds only the shards whose
objects changed. A job's inputs are absolute paths (or s3:// URIs): a job travels to processes
with working directories of their own.

Example::

    job = gan_job(config, "pacs/montgomery", "s3://pacs/shenzhen")
    data_uri, cached, data = cached_data(job, cache_key(job, storage), "out", storage)
    result = run_training(job.task(data), "out")
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harmonize.classifier.config import ClassifierConfig
from harmonize.classifier.data import ClassifierData, prepare_classifier_shards
from harmonize.classifier.training import ClassifierTask
from harmonize.io.archive import list_images
from harmonize.io.labels import finding_labels, read_labels
from harmonize.io.storage import Storage, join
from harmonize.training.config import TrainConfig
from harmonize.training.data import TrainingData, prepare_training_shards
from harmonize.training.gan import GanTask
from harmonize.training.shards import ShardRunner
from harmonize.training.task import TrainingTask

CACHE_FOLDER = "cache"


def _listing(uri: str, storage: Storage, what: str = "images") -> list[list[str]]:
    return [[o.uri, o.etag] for o in list_images(uri, storage, what=what)]


def _gan_listing(source: str, target: str, load_size: int, storage: Storage) -> dict[str, Any]:
    return {
        "load_size": load_size,
        "source": _listing(source, storage, "source images"),
        "target": _listing(target, storage, "target images"),
    }


def _classifier_listing(
    archive: str, labels: str, input_size: int, storage: Storage
) -> dict[str, Any]:
    return {
        "input_size": input_size,
        "images": _listing(archive, storage),
        "labels": sorted(finding_labels(read_labels(labels, storage)).items()),
    }


@dataclass(frozen=True)
class JobKind:
    """How one kind of model is trained from two inputs and an image size.

    Args:
        cache_name: the decoded data is indexed by ``OUT/cache/<cache_name>-<key>.json``, its
            shards are under ``OUT/cache/<cache_name>/``.
        listing: ``listing(input_a, input_b, size, storage)``: what the cache key hashes (the
            inputs' listings, the size); raises ConfigError for a missing or empty input.
        prepare: ``prepare(input_a, input_b, size, storage=, progress=, cache_uri=, runner=)``:
            the inputs decoded into shards under ``cache_uri`` by ``runner``, as the task's data.
        load: ``load(uri, storage)``: the cached data read back.
        task: ``task(config, data)``: what the one loop trains.
    """

    cache_name: str
    listing: Callable[..., dict[str, Any]]
    prepare: Callable[..., Any]
    load: Callable[[str, Storage], Any]
    task: Callable[[Any, Any], TrainingTask]


GAN = JobKind("training-data", _gan_listing, prepare_training_shards, TrainingData.load, GanTask)
CLASSIFIER = JobKind(
    "classifier-data",
    _classifier_listing,
    prepare_classifier_shards,
    ClassifierData.load,
    ClassifierTask,
)


@dataclass(frozen=True)
class TrainingJob:
    """What to train: ``name`` (the method: run names, messages), its ``config``, its ``kind``,
    its two ``inputs`` (absolute) and the image ``size`` its data is decoded at. Made by
    ``gan_job`` and ``classifier_job``; picklable."""

    name: str
    config: Any
    kind: JobKind
    inputs: tuple[str, str]
    size: int

    def listing(self, storage: Storage) -> dict[str, Any]:
        return self.kind.listing(*self.inputs, self.size, storage)

    def prepare(
        self,
        storage: Storage,
        cache_uri: str,
        progress: bool = True,
        runner: ShardRunner | None = None,
    ) -> Any:
        """The inputs decoded into shards under ``cache_uri`` by ``runner`` (threads here by
        default)."""
        return self.kind.prepare(
            *self.inputs,
            self.size,
            storage=storage,
            progress=progress,
            cache_uri=cache_uri,
            runner=runner,
        )

    def task(self, data: Any) -> TrainingTask:
        return self.kind.task(self.config, data)


def gan_job(config: TrainConfig, source_uri: str, target_uri: str) -> TrainingJob:
    """``config.method`` trained from the source site's archive to the target site's."""
    inputs = (Storage.normalize(source_uri), Storage.normalize(target_uri))
    return TrainingJob(config.method, config, GAN, inputs, config.load_size)


def classifier_job(config: ClassifierConfig, archive_uri: str, labels_uri: str) -> TrainingJob:
    """The target-site classifier, trained on an archive and its labels table (image_id =
    SOPInstanceUID, label)."""
    inputs = (Storage.normalize(archive_uri), Storage.normalize(labels_uri))
    return TrainingJob("classifier", config, CLASSIFIER, inputs, config.input_size)


def cache_key(job: TrainingJob, storage: Storage) -> str:
    """A short hash of the job's listing (every input image's URI and ETag, and so on)."""
    text = json.dumps(job.listing(storage), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_data(
    job: TrainingJob,
    key: str,
    out_uri: str,
    storage: Storage,
    progress: bool = True,
    runner: ShardRunner | None = None,
) -> tuple[str, bool, Any]:
    """The URI of the job's decoded data under ``OUT/cache/``, whether it was already there, and
    the data (decoded and saved here, once, when it was not: shards built by ``runner``, every
    shard already there reused).

    The file name holds the key, so a file is only ever reused for the inputs it was made from
    (a sidecar holding the key could be left stale by a crash between two writes)."""
    name = job.kind.cache_name
    uri = join(out_uri, CACHE_FOLDER, f"{name}-{key}.json")
    if storage.exists(uri):
        return uri, True, job.kind.load(uri, storage)
    data = job.prepare(storage, join(out_uri, CACHE_FOLDER, name), progress, runner)
    data.save(uri, storage)  # whole or not at all, after the shards: none is half there
    return uri, False, data
