"""Ray Train: the training loop of `harmonize.training` on one worker per GPU, DDP between them.

    driver:  list both archives ─ decode + resize once ─► OUT/cache/training-data-<key>.npz
    workers: load that file ─ training.train(rank, world_size, wrap=prepare_model, report=...)
             rank 0 writes OUT/checkpoints/step-*.pt and, at the end, the model under OUT/

The decoded data is keyed by a hash of both listings (URIs + ETags) and the load size, so a rerun
on unchanged archives skips decoding, and a changed archive can never reuse a stale cache. Ray
Train's own run files live under OUT/ray-train/. When a worker dies, Ray Train restarts the worker
group (``FailureConfig(max_failures)``) and the loop resumes from the latest checkpoint.

S3: `Storage` carries the endpoint; credentials come from the environment of each process. Local
Ray workers inherit the driver's; on a cluster, the AWS_* variables set on the driver are passed
to the workers in their runtime_env (clusters with an IAM role set none, and none are passed).

The target-site classifier (``train_classifier_distributed``) runs the same way around
``classifier.train_classifier``: the driver decodes and labels the archive once
(OUT/cache/classifier-data-<key>.npz), rank 0 writes OUT/classifier.json.

Progress: Ray does not forward the workers' output here, so the driver shows its own bar, fed by
the ``metrics.jsonl`` that rank 0 rewrites every ``log_every`` steps.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harmonize import training
from harmonize.classifier import (
    ClassifierConfig,
    ClassifierData,
    ClassifierResult,
    prepare_classifier_data,
    train_classifier,
)
from harmonize.distributed.jobs import aws_env
from harmonize.distributed.session import init_ray
from harmonize.errors import ConfigError, HarmonizeError
from harmonize.io.archive import list_images
from harmonize.io.labels import finding_labels, read_labels
from harmonize.io.storage import Storage, is_s3, join
from harmonize.training import (
    CHECKPOINT_FOLDER,
    METRICS_FILE,
    TrainConfig,
    TrainingData,
    TrainResult,
    latest_checkpoint,
    prepare_training_data,
)

if TYPE_CHECKING:
    import pyarrow.fs as pafs

CACHE_FOLDER, RAY_TRAIN_FOLDER = "cache", "ray-train"
MAX_FAILURES = 2  # worker-group restarts before the run fails


@dataclass(frozen=True)
class WorkerJob:
    """Everything a training worker needs (pickled to each worker)."""

    config: TrainConfig
    data_uri: str
    out_uri: str
    storage: Storage


def data_cache_key(source_uri: str, target_uri: str, load_size: int, storage: Storage) -> str:
    """A hash of both listings (URI + ETag of every image) and the load size."""
    listing = {
        name: [[o.uri, o.etag] for o in list_images(uri, storage, what=f"{name} images")]
        for name, uri in (("source", source_uri), ("target", target_uri))
    }
    text = json.dumps({"load_size": load_size, **listing}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_training_data(
    source_uri: str,
    target_uri: str,
    out_uri: str,
    load_size: int,
    storage: Storage,
    progress: bool = True,
) -> tuple[str, bool]:
    """The URI of the decoded training data under ``OUT/cache/`` and whether it was already
    there; decodes and saves it (once, in this process) when it was not.

    The file name holds the key, so a file is only ever reused for the inputs it was made from
    (a sidecar holding the key could be left stale by a crash between two writes)."""
    key = data_cache_key(source_uri, target_uri, load_size, storage)
    uri = join(out_uri, CACHE_FOLDER, f"training-data-{key}.npz")
    if storage.exists(uri):
        return uri, True
    data = prepare_training_data(
        source_uri, target_uri, load_size, storage=storage, progress=progress
    )
    data.save(uri, storage)  # whole or not at all: a crash leaves no half file to reuse
    return uri, False


def ray_train_storage(out_uri: str, storage: Storage) -> tuple[str, pafs.FileSystem | None]:
    """(storage_path, storage_filesystem) for Ray Train's run files under ``OUT/ray-train/``.

    For s3:// the filesystem is the Storage's pyarrow S3FileSystem, which carries the endpoint
    (pyarrow ignores AWS_ENDPOINT_URL) and resolves credentials in each process that unpickles
    it (keys are not pickled)."""
    uri = join(out_uri, RAY_TRAIN_FOLDER)
    if is_s3(uri):
        fs, path = storage.filesystem(uri)
        return path, fs
    return storage.normalize(uri), None


def clear_checkpoints(out_uri: str, storage: Storage) -> None:
    """Delete ``OUT/checkpoints/`` (``resume=False``: start over, so that a restart after a
    failure resumes from this run's checkpoints, never from an older run's)."""
    if latest_checkpoint(out_uri, storage) is None:
        return
    fs, path = storage.filesystem(join(out_uri, CHECKPOINT_FOLDER))
    try:
        fs.delete_dir_contents(path, missing_dir_ok=True)
    except OSError as err:
        raise HarmonizeError(f'cannot delete the checkpoints under "{out_uri}": {err}') from err


def train_worker(params: dict[str, Any]) -> dict[str, Any]:
    """The per-worker function: rank and world size from Ray Train, DDP through
    ``prepare_model``, metrics through ``ray.train.report``.

    Train V2's report is a collective, so every rank must report the same number of times: the
    loop reports every ``log_every`` steps and at its last step, on every rank, and all ranks
    resume from the same checkpoint. Returns the `TrainResult` as a dict (Ray hands rank 0's to
    the driver as ``Result.return_value``)."""
    import ray.train
    import ray.train.torch

    job: WorkerJob = params["job"]
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    data = TrainingData.load(job.data_uri, job.storage)

    def report(metrics: dict[str, float], step: int) -> None:
        ray.train.report({**metrics, "step": step})

    result = training.train(
        job.config,
        data,
        job.out_uri,
        storage=job.storage,
        rank=rank,
        world_size=world_size,
        wrap=ray.train.torch.prepare_model,
        report=report,
        resume=True,  # a restart after a failure continues from the latest checkpoint
        progress=False,  # workers' output stays in their logs; the driver shows the bar
        device=ray.train.torch.get_device(),
    )
    return asdict(result)


class MetricsProgress:
    """A driver-side progress bar fed by rank 0's ``metrics.jsonl`` (polled in a thread)."""

    def __init__(
        self,
        out_uri: str,
        storage: Storage,
        total: int,
        enabled: bool,
        keys: tuple[str, ...] = ("g_total", "d_b"),
    ) -> None:
        self.uri = join(out_uri, METRICS_FILE)
        self.storage, self.total, self.enabled, self.keys = storage, total, enabled, keys
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> MetricsProgress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _poll(self, interval: float = 2.0) -> None:
        from tqdm import tqdm

        with tqdm(total=self.total, desc="train", unit="step", leave=False) as bar:
            while not self._stop.wait(interval):
                try:
                    lines = self.storage.read_text(self.uri).splitlines()
                    last = json.loads(lines[-1]) if lines else None
                except (HarmonizeError, ValueError):  # not written yet, or mid-rewrite
                    continue
                if last:
                    bar.n = int(last.get("step", 0))
                    bar.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k in self.keys})


def _root_cause(err: BaseException) -> BaseException:
    """The exception a worker raised, inside a Ray Train failure."""
    failures = getattr(err, "worker_failures", None)
    if failures:
        first = failures[min(failures)]
        return getattr(first, "_base_exc", first)  # UserExceptionWithTraceback wraps it
    return getattr(err, "controller_failure", err)


def worker_count(gpus: int, workers: int | None) -> int:
    """How many Ray Train workers: one per GPU, else ``workers`` CPU workers (default 1)."""
    if gpus < 0 or (workers is not None and workers < 1):
        raise ConfigError(f"gpus must be >= 0 and workers >= 1, got gpus={gpus} workers={workers}")
    if gpus and workers is not None and workers != gpus:
        raise ConfigError(
            f"--workers {workers} is for CPU training; with --gpus {gpus} there is one worker "
            "per GPU"
        )
    return gpus or workers or 1


def fit_on_ray(
    worker: Any,
    job: Any,
    *,
    name: str,
    out_uri: str,
    storage: Storage,
    n_workers: int,
    gpus: int,
    ray_address: str | None,
    max_failures: int,
    progress: MetricsProgress,
) -> tuple[dict[str, Any], str]:
    """Run ``worker({"job": job})`` on ``n_workers`` Ray Train workers (DDP; one per GPU when
    ``gpus``), Ray Train's run files under ``out_uri/ray-train/<name>-<time>``; returns rank 0's
    return value and the run name.

    Raises:
        HarmonizeError: a worker's own HarmonizeError, or a failure after ``max_failures``
            restarts of the worker group.
    """
    init_ray(ray_address)  # sets RAY_TRAIN_V2_ENABLED before ray.train is imported
    import ray.train
    from ray.train.torch import TorchTrainer

    storage_path, filesystem = ray_train_storage(out_uri, storage)
    run_name = f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    env = aws_env()  # reaches workers on other nodes, which do not inherit this environment
    # mypy sees Ray Train V1's signatures; at runtime (RAY_TRAIN_V2_ENABLED) these are V2's.
    trainer_class: Any = TorchTrainer
    run_config_class: Any = ray.train.RunConfig
    trainer = trainer_class(
        worker,
        train_loop_config={"job": job},
        scaling_config=ray.train.ScalingConfig(num_workers=n_workers, use_gpu=bool(gpus)),
        run_config=run_config_class(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            worker_runtime_env={"env_vars": env} if env else None,
        ),
    )
    try:
        with progress:
            fitted = trainer.fit()
    except ray.train.TrainingFailedError as err:
        cause = _root_cause(err)
        if isinstance(cause, HarmonizeError):
            raise cause from err
        raise HarmonizeError(
            f"{name} training failed ({max_failures} restart(s) allowed): {cause!r}; Ray Train "
            f"run files: {join(out_uri, RAY_TRAIN_FOLDER, run_name)}"
        ) from err
    return fitted.return_value, run_name


def train_distributed(
    config: TrainConfig,
    source_uri: str,
    target_uri: str,
    out_uri: str,
    *,
    gpus: int = 0,
    workers: int | None = None,
    storage: Storage,
    ray_address: str | None = None,
    resume: bool = True,
    progress: bool = True,
    max_failures: int = MAX_FAILURES,
) -> dict[str, Any]:
    """Train ``config.method`` with Ray Train and save the model under ``out_uri``.

    Args:
        config: the training configuration (`harmonize.training.load_train_config`).
        source_uri, target_uri: the two sites' archives (DICOM under each prefix).
        out_uri: output prefix: the model, checkpoints/, metrics.jsonl, cache/, ray-train/.
        gpus: one worker per GPU (DDP over NCCL); 0 trains on CPU workers.
        workers: CPU workers when ``gpus`` is 0 (default 1; DDP over gloo when more).
        storage: how to reach the URIs (S3 endpoint).
        ray_address: Ray cluster address; None: local Ray (or, inside a Ray Job, its cluster).
        resume: continue from the latest checkpoint under ``out_uri/checkpoints``; False
            deletes those checkpoints first and starts from step 0 (a restart after a worker
            failure always resumes, from this run's checkpoints).
        progress: a progress bar on the driver (decode, then training steps).
        max_failures: worker-group restarts before the run fails.

    Returns:
        method, steps, start_step (where this call resumed), seconds (whole call),
        prepare_seconds, train_seconds (the loop, summed over attempts), model_uri, losses
        (the last logged window's means), validation (the model card's), workers, gpus,
        data_uri, data_cached (the decoded data was reused), ray_train_path.

    Raises:
        HarmonizeError: bad settings or inputs (a worker's own HarmonizeError is re-raised
            here), or training that failed after ``max_failures`` restarts.
    """
    n_workers = worker_count(gpus, workers)
    start = time.perf_counter()
    data_uri, cached = cached_training_data(
        source_uri, target_uri, out_uri, config.load_size, storage, progress
    )
    prepare_seconds = time.perf_counter() - start
    if not resume:
        clear_checkpoints(out_uri, storage)
    job = WorkerJob(config=config, data_uri=data_uri, out_uri=out_uri, storage=storage)
    returned, run_name = fit_on_ray(
        train_worker,
        job,
        name=config.method,
        out_uri=out_uri,
        storage=storage,
        n_workers=n_workers,
        gpus=gpus,
        ray_address=ray_address,
        max_failures=max_failures,
        progress=MetricsProgress(out_uri, storage, config.steps, progress),
    )
    result = TrainResult(**returned)  # rank 0's
    return {
        "method": config.method,
        "steps": result.steps,
        "start_step": result.start_step,
        "seconds": round(time.perf_counter() - start, 2),
        "prepare_seconds": round(prepare_seconds, 2),
        "train_seconds": round(result.seconds, 2),
        "model_uri": result.model_uri,
        "losses": result.losses,
        "validation": result.validation,
        "workers": n_workers,
        "gpus": gpus,
        "data_uri": data_uri,
        "data_cached": cached,
        "ray_train_path": join(out_uri, RAY_TRAIN_FOLDER, run_name),
    }


# -- the target-site classifier --------------------------------------------------------------------
@dataclass(frozen=True)
class ClassifierWorkerJob:
    """Everything a classifier training worker needs (pickled to each worker)."""

    config: ClassifierConfig
    data_uri: str
    out_uri: str
    storage: Storage


def classifier_data_cache_key(
    archive_uri: str, labels_uri: str, input_size: int, storage: Storage
) -> str:
    """A hash of the archive's listing (URI + ETag of every image), the labels table's content
    and the input size."""
    listing = [[o.uri, o.etag] for o in list_images(archive_uri, storage)]
    labels = json.dumps(sorted(finding_labels(read_labels(labels_uri, storage)).items()))
    text = json.dumps({"input_size": input_size, "images": listing, "labels": labels})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_classifier_data(
    archive_uri: str,
    labels_uri: str,
    out_uri: str,
    input_size: int,
    storage: Storage,
    progress: bool = True,
) -> tuple[str, bool, ClassifierData]:
    """The URI of the decoded, labelled images under ``OUT/cache/``, whether they were already
    there, and the data itself (decoded and saved here when it was not there)."""
    key = classifier_data_cache_key(archive_uri, labels_uri, input_size, storage)
    uri = join(out_uri, CACHE_FOLDER, f"classifier-data-{key}.npz")
    if storage.exists(uri):
        return uri, True, ClassifierData.load(uri, storage)
    data = prepare_classifier_data(
        archive_uri, labels_uri, input_size, storage=storage, progress=progress
    )
    data.save(uri, storage)  # whole or not at all
    return uri, False, data


def classifier_train_worker(params: dict[str, Any]) -> dict[str, Any]:
    """The per-worker function of the classifier: like ``train_worker``, around
    ``classifier.train_classifier``. Returns the `ClassifierResult` as a dict."""
    import ray.train
    import ray.train.torch

    job: ClassifierWorkerJob = params["job"]
    ctx = ray.train.get_context()
    data = ClassifierData.load(job.data_uri, job.storage)

    def report(metrics: dict[str, float], step: int) -> None:
        ray.train.report({**metrics, "step": step})

    result = train_classifier(
        job.config,
        data,
        job.out_uri,
        storage=job.storage,
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        wrap=ray.train.torch.prepare_model,
        report=report,
        resume=True,  # a restart after a failure continues from the latest checkpoint
        progress=False,
        device=ray.train.torch.get_device(),
    )
    return asdict(result)


def train_classifier_distributed(
    config: ClassifierConfig,
    archive_uri: str,
    labels_uri: str,
    out_uri: str,
    *,
    gpus: int = 0,
    workers: int | None = None,
    storage: Storage,
    ray_address: str | None = None,
    resume: bool = True,
    progress: bool = True,
    max_failures: int = MAX_FAILURES,
) -> dict[str, Any]:
    """Train the target-site classifier with Ray Train and save it under ``out_uri``.

    The driver decodes and labels the archive once (cached under ``OUT/cache/``) and checks the
    split before Ray starts; each worker trains with its own sampling stream (DDP via
    ``prepare_model``); rank 0 writes checkpoints, logs and ``classifier.json``.

    Args:
        config: the classifier configuration (`harmonize.classifier.load_classifier_config`).
        archive_uri: the target site's archive (DICOM under this prefix).
        labels_uri: the labels table (image_id = SOPInstanceUID, label).
        out_uri, gpus, workers, storage, ray_address, resume, progress, max_failures: as for
            ``train_distributed``.

    Returns:
        steps, start_step, seconds, prepare_seconds, train_seconds, model_uri, losses,
        validation (ROC AUC, loss, accuracy, counts), n_images (per split and class),
        n_skipped, workers, gpus, data_uri, data_cached, ray_train_path.

    Raises:
        HarmonizeError: bad settings or inputs (no labels table, no labelled images, one
            class), a worker's own HarmonizeError, or training that failed after
            ``max_failures`` restarts.
    """
    n_workers = worker_count(gpus, workers)
    start = time.perf_counter()
    data_uri, cached, data = cached_classifier_data(
        archive_uri, labels_uri, out_uri, config.input_size, storage, progress
    )
    split = data.split(config.val_fraction)  # a class too small to split fails here, not in Ray
    prepare_seconds = time.perf_counter() - start
    if not resume:
        clear_checkpoints(out_uri, storage)
    job = ClassifierWorkerJob(config=config, data_uri=data_uri, out_uri=out_uri, storage=storage)
    returned, run_name = fit_on_ray(
        classifier_train_worker,
        job,
        name="classifier",
        out_uri=out_uri,
        storage=storage,
        n_workers=n_workers,
        gpus=gpus,
        ray_address=ray_address,
        max_failures=max_failures,
        progress=MetricsProgress(
            out_uri, storage, config.steps, progress, keys=("loss", "val_auc")
        ),
    )
    result = ClassifierResult(**returned)  # rank 0's
    return {
        "steps": result.steps,
        "start_step": result.start_step,
        "seconds": round(time.perf_counter() - start, 2),
        "prepare_seconds": round(prepare_seconds, 2),
        "train_seconds": round(result.seconds, 2),
        "model_uri": result.model_uri,
        "losses": result.losses,
        "validation": result.validation,
        "n_images": {
            "train": data.counts(split.train),
            "validation": data.counts(split.validation),
        },
        "n_skipped": dict(data.skipped),
        "workers": n_workers,
        "gpus": gpus,
        "data_uri": data_uri,
        "data_cached": cached,
        "ray_train_path": join(out_uri, RAY_TRAIN_FOLDER, run_name),
    }
