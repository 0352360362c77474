"""Ray Train: the one training loop on one worker per GPU, DDP between them, for any training
job (a GAN or the target-site classifier: ``harmonize.training.job``).

    driver:  list the inputs ─ check --gpus against the cluster ─ decode once, as Ray tasks on
             the cluster's CPUs (one per shard) ─► OUT/cache/<training|classifier>-data/*.arrow,
             indexed by OUT/cache/<training|classifier>-data-<key>.json
    workers: open that index (each reads only the images it draws)
             ─ training.loop.run_training(task, rank, world_size,
             wrap=prepare_model, report=...); rank 0 writes OUT/checkpoints/step-*.pt and, at
             the end, the model under OUT/

Every local path is made absolute in the driver (the job's inputs by ``gan_job`` /
``classifier_job``, OUT here): Ray Train's workers have working directories of their own. Ray
Train's run files live under OUT/ray-train/. When a worker dies, Ray Train restarts the worker
group (``FailureConfig(max_failures)``) and the loop resumes from the latest checkpoint.

S3: `Storage` carries the endpoint; credentials come from the environment of each process. Local
Ray workers inherit the driver's; on a cluster, the AWS_* variables set on the driver are passed
to the workers in their runtime_env (clusters with an IAM role set none, and none are passed).

Progress: Ray does not forward the workers' output here, so the driver shows its own bar, fed by
the ``metrics.jsonl`` that rank 0 rewrites every ``log_every`` steps.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harmonize.distributed.jobs import aws_env
from harmonize.distributed.session import init_ray
from harmonize.distributed.session import ray_address as ray_address_of
from harmonize.distributed.shards import ray_tasks
from harmonize.errors import ConfigError, HarmonizeError
from harmonize.io.storage import Storage, is_s3, join
from harmonize.training.checkpoint import clear_checkpoints
from harmonize.training.job import TrainingJob, cache_key, cached_data
from harmonize.training.logging import last_logged
from harmonize.training.loop import run_training
from harmonize.training.task import TrainResult

if TYPE_CHECKING:
    import pyarrow.fs as pafs

logger = logging.getLogger(__name__)
RAY_TRAIN_FOLDER = "ray-train"
MAX_FAILURES = 2  # worker-group restarts before the run fails


# -- the cluster -----------------------------------------------------------------------------------
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


def gpu_shortfall(gpus: int, resources: dict[str, float], where: str) -> str | None:
    """What to tell a user who asks for ``gpus`` GPUs of a cluster with ``resources`` (as
    ``ray.cluster_resources()`` gives them), or None when there are enough."""
    found = int(resources.get("GPU", 0))
    if found >= gpus:
        return None
    return (
        f"--gpus {gpus} asks for {gpus} GPU{'s' if gpus > 1 else ''}, the Ray cluster {where} "
        f"has {found} (CPUs: {int(resources.get('CPU', 0))})"
    )


def check_gpus(gpus: int, ray_address: str | None) -> None:
    """Refuse at once to wait for GPUs that cannot come (Ray Train would wait forever,
    silently): on a Ray this process started, the GPUs it has are all there will be. A cluster
    it joins may have an autoscaler that adds GPU nodes on demand: there it says what it found
    and goes on waiting."""
    ray = init_ray(ray_address)
    address = ray_address or os.environ.get("RAY_ADDRESS")
    shortfall = gpu_shortfall(
        gpus, ray.cluster_resources(), f"at {address}" if address else "started on this machine"
    )
    if shortfall is None:
        return
    if ray_address_of(ray_address) == "local":
        raise ConfigError(
            f"{shortfall}; train on CPU workers with --gpus 0 or connect to a GPU cluster "
            "with --address"
        )
    logger.warning(
        "%s now; waiting for its autoscaler to add GPU nodes (stop with Ctrl-C, or "
        "`harmonize submit stop JOB_ID` for a job)",
        shortfall,
    )


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


class MetricsProgress:
    """A driver-side progress bar fed by rank 0's ``metrics.jsonl`` (polled in a thread)."""

    def __init__(
        self, out_uri: str, storage: Storage, total: int, enabled: bool, keys: tuple[str, ...]
    ) -> None:
        self.out_uri, self.storage, self.total, self.enabled = out_uri, storage, total, enabled
        self.keys = keys
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
                last = last_logged(self.out_uri, self.storage)
                if last:
                    bar.n = int(last.get("step", 0))
                    bar.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k in self.keys})


# -- the workers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerJob:
    """Everything a training worker needs (pickled to each worker; every URI absolute)."""

    job: TrainingJob
    data_uri: str
    out_uri: str
    storage: Storage


def train_worker(params: dict[str, Any]) -> dict[str, Any]:
    """The per-worker function: rank and world size from Ray Train, DDP through
    ``prepare_model``, metrics through ``ray.train.report``.

    Train V2's report is a collective, so every rank must report the same number of times: the
    loop reports at the same steps on every rank, and all ranks resume from the same checkpoint.
    Returns the `TrainResult` as a dict (Ray hands rank 0's to the driver as
    ``Result.return_value``)."""
    import ray.train
    import ray.train.torch

    work: WorkerJob = params["job"]
    ctx = ray.train.get_context()

    def report(metrics: dict[str, float], step: int) -> None:
        ray.train.report({**metrics, "step": step})

    result = run_training(
        work.job.task(work.job.kind.load(work.data_uri, work.storage)),
        work.out_uri,
        storage=work.storage,
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        wrap=ray.train.torch.prepare_model,
        report=report,
        resume=True,  # a restart after a failure continues from the latest checkpoint
        progress=False,  # workers' output stays in their logs; the driver shows the bar
        device=ray.train.torch.get_device(),
    )
    return asdict(result)


def _root_cause(err: BaseException) -> BaseException:
    """The exception a worker raised, inside a Ray Train failure."""
    failures = getattr(err, "worker_failures", None)
    if failures:
        first = failures[min(failures)]
        return getattr(first, "_base_exc", first)  # UserExceptionWithTraceback wraps it
    return getattr(err, "controller_failure", err)


def fit_on_ray(
    work: WorkerJob,
    *,
    n_workers: int,
    gpus: int,
    ray_address: str | None,
    max_failures: int,
    progress: MetricsProgress,
) -> tuple[dict[str, Any], str]:
    """Run ``train_worker`` on ``n_workers`` Ray Train workers (DDP; one per GPU when ``gpus``),
    Ray Train's run files under ``OUT/ray-train/<name>-<time>``; returns rank 0's return value
    and the run name.

    Raises:
        HarmonizeError: a worker's own HarmonizeError, or a failure after ``max_failures``
            restarts of the worker group.
    """
    name = work.job.name
    init_ray(ray_address)  # sets RAY_TRAIN_V2_ENABLED before ray.train is imported
    import ray.train
    from ray.train.torch import TorchTrainer

    storage_path, filesystem = ray_train_storage(work.out_uri, work.storage)
    run_name = f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    env = aws_env()  # reaches workers on other nodes, which do not inherit this environment
    # mypy sees Ray Train V1's signatures; at runtime (RAY_TRAIN_V2_ENABLED) these are V2's.
    trainer_class: Any = TorchTrainer
    run_config_class: Any = ray.train.RunConfig
    trainer = trainer_class(
        train_worker,
        train_loop_config={"job": work},
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
            f"run files: {join(work.out_uri, RAY_TRAIN_FOLDER, run_name)}"
        ) from err
    return fitted.return_value, run_name


# -- the driver ------------------------------------------------------------------------------------
def train_distributed(
    job: TrainingJob,
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
    """Train ``job`` with Ray Train and save its model under ``out_uri``.

    Args:
        job: what to train (``gan_job(config, source, target)``,
            ``classifier_job(config, archive, labels)``).
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
        what the task says about its data (a GAN: method, source_uri, target_uri, n_images,
        n_unreadable; the classifier: archive_uri, labels_uri, n_images per split and class,
        n_skipped, image_ids_sha256), then steps, start_step (where this call resumed),
        seconds (whole call), prepare_seconds, train_seconds (the loop, summed over attempts),
        model_uri, losses (the last logged window's means), validation (the model card's),
        workers, gpus, data_uri, data_cached (the decoded data was reused), ray_train_path.

    Raises:
        HarmonizeError: bad settings or inputs (before Ray starts; a worker's own
            HarmonizeError is re-raised here), more GPUs than the cluster has, or training that
            failed after ``max_failures`` restarts.
    """
    n_workers = worker_count(gpus, workers)
    out_uri = storage.normalize(out_uri)  # a relative path means the driver's working directory
    start = time.perf_counter()
    key = cache_key(job, storage)  # lists the inputs: a missing or empty one fails here
    if gpus:
        check_gpus(gpus, ray_address)
    init_ray(ray_address)  # the shards are decoded as Ray tasks, on the cluster's CPUs
    data_uri, cached, data = cached_data(job, key, out_uri, storage, progress, ray_tasks)
    task = job.task(data)  # the data fits the config (a class too small to split...)
    prepare_seconds = time.perf_counter() - start
    if not resume:
        clear_checkpoints(out_uri, storage)
    returned, run_name = fit_on_ray(
        WorkerJob(job, data_uri, out_uri, storage),
        n_workers=n_workers,
        gpus=gpus,
        ray_address=ray_address,
        max_failures=max_failures,
        progress=MetricsProgress(out_uri, storage, job.config.steps, progress, task.progress_keys),
    )
    result = TrainResult(**returned)  # rank 0's
    return {
        **task.describe(),
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
