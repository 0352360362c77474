"""What the one training loop trains (``TrainingTask``: a GAN recipe, the classifier) and what
one training call returns (``TrainResult``).

The loop (``loop.run_training``) owns seeding, the per-rank sampler stream, resume, the progress
bar, the log window, metrics.jsonl/TensorBoard, ``report``, the checkpoint cadence and the time
accounting. A task owns its networks: one step, its part of a checkpoint and the check that a
checkpoint fits it, an optional periodic evaluation (rank 0), and the saved model with its card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from harmonize.io.storage import Storage


class LoopSettings(Protocol):
    """The config fields the loop reads (``TrainConfig`` and ``ClassifierConfig`` have them)."""

    @property
    def steps(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def log_every(self) -> int: ...
    @property
    def checkpoint_every(self) -> int: ...


class TrainingTask(Protocol):
    """A thing the loop trains. Called in this order: ``setup`` (after the loop has seeded the
    global random streams), ``load_state_dict`` (when resuming; then, on ranks > 0,
    ``load_rank_state`` with the rank's own part), then per step ``train_step``,
    ``learning_rate`` (log steps), ``evaluation_due`` and, on rank 0, ``evaluate``; at
    checkpoints ``state_dict`` (rank 0) and ``rank_state`` (every rank); ``describe`` and
    ``finish`` at the end, on rank 0."""

    @property
    def name(self) -> str:
        """What is trained (``cyclegan``, ``classifier``): the progress bar's label."""

    @property
    def config(self) -> LoopSettings: ...

    @property
    def progress_keys(self) -> tuple[str, ...]:
        """The metrics shown next to a progress bar."""

    def setup(
        self, device: torch.device, rank: int, wrap: Callable[[nn.Module], nn.Module] | None
    ) -> dict[str, Any]:
        """Build the networks on ``device``; returns the config with its automatic choices made
        for it (recorded in every checkpoint and in the card)."""

    def train_step(self, step: int, sampler: np.random.Generator) -> dict[str, float]:
        """Sample a batch from ``sampler`` and take optimisation step ``step`` (0-based); the
        losses."""

    @property
    def learning_rate(self) -> float:
        """The learning rate to log with the step just taken."""

    def evaluation_due(self, step: int) -> bool:
        """Whether rank 0 evaluates after ``step`` steps (the same answer on every rank)."""

    def evaluate(self) -> dict[str, float]:
        """Rank 0's evaluation metrics (logged and reported with the step's)."""

    def state_dict(self) -> dict[str, Any]:
        """The task's part of a checkpoint (tensors and plain values)."""

    def load_state_dict(self, checkpoint: Mapping[str, Any], uri: str) -> None:
        """Continue from ``checkpoint`` (read from ``uri``); ConfigError when it was trained
        with other settings or data."""

    def rank_state(self) -> dict[str, Any]:
        """What of ``state_dict()`` is this rank's own in a distributed run (a GAN's image
        pools and noise streams); every rank's is saved in the checkpoint."""

    def load_rank_state(self, state: Mapping[str, Any]) -> None:
        """Restore this rank's ``rank_state`` after ``load_state_dict`` (rank 0's)."""

    def describe(self) -> dict[str, Any]:
        """What the model card and the distributed summary say about the task's data."""

    def finish(
        self, out_uri: str, storage: Storage, card: dict[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        """Save the trained model with ``card`` (plus the task's validation) under ``out_uri``;
        returns the model's URI and the validation."""


@dataclass(frozen=True)
class TrainResult:
    """What one training call did. ``model_uri`` and ``checkpoint_uri`` are set on rank 0."""

    losses: dict[str, float]  # the mean of the last log window
    steps: int
    start_step: int
    seconds: float
    model_uri: str | None
    checkpoint_uri: str | None
    validation: dict[str, Any] | None  # the model card's (rank 0)
