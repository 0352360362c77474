"""The one training loop: any ``TrainingTask`` (a GAN recipe, the classifier), one process, no Ray.

Per call: seed Python's, numpy's and torch's global streams with ``config.seed``; let the task
build its networks; draw batches from a per-rank stream seeded (seed, rank); resume from the
latest checkpoint under ``OUT/checkpoints`` (every rank restores its own random streams and its
task's per-rank state, e.g. a GAN's image pools: rank 0's are the checkpoint's top level, the other
ranks' are gathered into it under ``ranks``); log the window's mean losses every
``log_every`` steps (metrics.jsonl and TensorBoard on rank 0, ``report`` on every rank at the
same steps: Ray Train V2's report is a collective); checkpoint every ``checkpoint_every`` steps
and at the end (rank 0 writes it; every rank takes part); then, on rank 0, let the task save
its model with the card.

A resumed run equals an uninterrupted one bit for bit, on every rank: its logs, losses and
weights (resumed with another number of workers, ranks the checkpoint lacks go on with a fresh
stream seeded (seed, rank, step), and the run says it is no longer exact).

Distributed training (``harmonize.distributed.train``) calls it once per worker with its
``rank``, ``world_size`` and ``wrap=prepare_model``; only rank 0 writes files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from harmonize import __version__
from harmonize.device import pick_device
from harmonize.io.storage import Storage
from harmonize.training.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_uri,
    latest_checkpoint,
    load_checkpoint,
    random_state,
    restore_random_state,
    save_checkpoint,
    seed_everything,
)
from harmonize.training.logging import MetricsLog, last_logged_losses, window_means
from harmonize.training.task import TrainingTask, TrainResult

logger = logging.getLogger(__name__)

Report = Callable[[dict[str, float], int], None]


class LoopOptions(TypedDict, total=False):
    """The keyword options of ``run_training`` (and of ``train``, ``train_classifier``)."""

    storage: Storage | None
    rank: int
    world_size: int
    wrap: Callable[[nn.Module], nn.Module] | None
    report: Report | None
    resume: bool
    progress: bool
    device: torch.device | str | None


@dataclass
class _State:
    """Where a run stands: the next step, seconds trained so far, the open log window, the last
    window's mean losses, the latest checkpoint."""

    step: int = 0
    seconds: float = 0.0
    window: list[dict[str, float]] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)
    checkpoint_uri: str | None = None


def _gather_ranks(
    task: TrainingTask, sampler: np.random.Generator, rank: int, world_size: int
) -> dict[int, dict[str, Any]]:
    """What a checkpoint keeps of the ranks > 0, gathered on rank 0: {rank: its random streams
    and its task's ``rank_state``} (a collective: every rank calls it at the same steps); {} on
    the other ranks and in a single process."""
    import torch.distributed as dist

    if world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return {}
    mine = None if rank == 0 else {"random": random_state(sampler), "task": task.rank_state()}
    gathered: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    return {r: state for r, state in enumerate(gathered or []) if r > 0}


def _resume(
    uri: str,
    task: TrainingTask,
    sampler: np.random.Generator,
    rank: int,
    world_size: int,
    storage: Storage,
) -> tuple[_State, np.random.Generator]:
    """Load the checkpoint at ``uri`` into the task and this rank's random streams."""
    checkpoint = load_checkpoint(uri, storage)
    task.load_state_dict(checkpoint, uri)
    step = int(checkpoint["step"])
    saved_world = int(checkpoint.get("world_size", 1))
    if saved_world != world_size and rank == 0:
        logger.warning(
            "%s was written by %d workers, this run has %d: ranks the checkpoint lacks go on "
            "with fresh random streams, so the run is no longer exactly the uninterrupted one",
            uri,
            saved_world,
            world_size,
        )
    own = checkpoint.get("ranks", {}).get(rank)
    if rank == 0:
        restore_random_state(checkpoint["random"], sampler)
    elif own is not None:
        task.load_rank_state(own["task"])
        restore_random_state(own["random"], sampler)
    else:
        sampler = np.random.default_rng([task.config.seed, rank, step])
    logger.info("resuming %s from %s at step %d", task.name, uri, step)
    state = _State(
        step,
        float(checkpoint["seconds"]),
        list(checkpoint["window"]),
        dict(checkpoint.get("losses") or {}),
        uri,
    )
    return state, sampler


def run_training(
    task: TrainingTask,
    out_uri: str,
    *,
    storage: Storage | None = None,
    rank: int = 0,
    world_size: int = 1,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    report: Report | None = None,
    resume: bool = True,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> TrainResult:
    """Train ``task``; checkpoints, logs and the model go under ``out_uri``.

    Args:
        task: what to train (``GanTask``, ``ClassifierTask``).
        out_uri: output prefix (local folder or s3://): metrics.jsonl, tensorboard/,
            checkpoints/, and the model. Rank 0 writes it all.
        storage: how to reach ``out_uri``.
        rank, world_size: this process's place in a distributed run (DDP set up by the caller).
        wrap: applied to the task's networks (Ray Train's ``prepare_model``).
        report: ``report(metrics, step)`` at every log or evaluation step, on every rank.
        resume: continue from the latest checkpoint under ``out_uri`` when there is one. False
            starts from step 0 but leaves older checkpoints in place: delete them (or use a new
            ``out_uri``) so that a later resume cannot pick up a checkpoint of the old run.
        progress: show a progress bar (rank 0).
        device: where to train (default: the current CUDA device, else the CPU).

    Raises:
        ConfigError: the checkpoint to resume was trained with other settings or data.
    """
    from tqdm import tqdm

    store = storage or Storage()
    device = pick_device(device)
    settings = task.config
    seed_everything(settings.seed)
    resolved = task.setup(device, rank, wrap)
    sampler = np.random.default_rng([settings.seed, rank])
    latest = latest_checkpoint(out_uri, store) if resume else None
    state = _State()
    if latest is not None:
        state, sampler = _resume(latest, task, sampler, rank, world_size, store)
    start_step, seconds_before = state.step, state.seconds

    show = progress and rank == 0
    bar = tqdm(
        total=settings.steps, initial=start_step, desc=f"train {task.name}", disable=not show
    )
    if latest is not None and show:
        bar.write(f"resumed from {latest} at step {start_step}")
    log = MetricsLog(out_uri, store, start_step) if rank == 0 else None
    postfix: dict[str, str] = {}
    started = window_started = time.perf_counter()
    try:
        for step in range(start_step, settings.steps):
            state.window.append(task.train_step(step, sampler))
            state.step = step + 1
            bar.update()
            last = state.step == settings.steps
            logged = state.step % settings.log_every == 0 or last
            evaluated = task.evaluation_due(state.step)
            metrics: dict[str, float] = {}
            if logged:
                now = time.perf_counter()
                state.losses = window_means(state.window)
                metrics.update(
                    state.losses,
                    lr=task.learning_rate,
                    seconds_per_step=(now - window_started) / len(state.window),
                )
                state.window, window_started = [], now
            if evaluated and rank == 0:  # the bare networks: no DDP collective on one rank only
                metrics.update(task.evaluate())
            if metrics:
                postfix.update({k: f"{metrics[k]:.3f}" for k in task.progress_keys if k in metrics})
                bar.set_postfix(postfix)
                if log is not None:
                    log.write(state.step, metrics)
            if report is not None and (logged or evaluated):
                report(metrics, state.step)  # the same steps on every rank (a collective)
            if state.step % settings.checkpoint_every == 0 or last:
                ranks = _gather_ranks(task, sampler, rank, world_size)
                if rank == 0:  # writes what every rank saved
                    state.seconds = seconds_before + time.perf_counter() - started
                    state.checkpoint_uri = checkpoint_uri(out_uri, state.step)
                    checkpoint = {
                        "format": CHECKPOINT_FORMAT,
                        "step": state.step,
                        "seconds": state.seconds,
                        "config": resolved,
                        **task.state_dict(),
                        "random": random_state(sampler),
                        "world_size": world_size,
                        "ranks": ranks,
                        "window": state.window,
                        "losses": state.losses,
                        "code_version": __version__,
                    }
                    save_checkpoint(state.checkpoint_uri, checkpoint, store)
                    if log is not None:
                        log.sync()
    finally:
        bar.close()
        if log is not None:
            log.close()
    seconds = seconds_before + time.perf_counter() - started
    if not state.losses and latest is not None:  # resumed at the end of a run that saved none
        state.losses = last_logged_losses(out_uri, store)
    if rank != 0:
        return TrainResult(state.losses, settings.steps, start_step, seconds, None, None, None)
    card: dict[str, Any] = {
        **task.describe(),
        "config": resolved,
        "code_version": __version__,
        "train_seconds": round(seconds, 3),
        "world_size": world_size,
        "device": str(device),
        "final_losses": state.losses,
        "checkpoint_uri": state.checkpoint_uri,
        "created_at": datetime.now(UTC).isoformat(),
    }
    model_uri, validation = task.finish(out_uri, store, card)
    return TrainResult(
        state.losses,
        settings.steps,
        start_step,
        seconds,
        model_uri,
        state.checkpoint_uri,
        validation,
    )
