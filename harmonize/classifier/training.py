"""Training the target-site classifier: ``ClassifierTask`` (through the one loop) and
``train_classifier``.

Adam with a cosine learning rate, BCE with logits, batches drawn (with replacement) from the
training split of a hash split by image_id and geometrically augmented. Rank 0 validates (ROC
AUC, loss, accuracy through the scoring path) every ``validate_every`` steps and at the end; the
model is saved as ``classifier.json`` + ``weights.safetensors`` with its card.

Example::

    config = load_classifier_config("jobs/configs/classifier.yaml", steps=500)
    data = prepare_classifier_data("s3://pacs/shenzhen", "s3://pacs/labels.parquet", 256)
    result = train_classifier(config, data, "s3://models/classifier-sz")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Unpack

import numpy as np
import torch
from torch import nn

from harmonize.classifier.config import ClassifierConfig
from harmonize.classifier.data import ClassifierData, ids_digest, sample_batch
from harmonize.classifier.model import EVAL_BATCH, METHOD, save_classifier
from harmonize.classifier.network import build_classifier, probabilities
from harmonize.classifier.preprocess import levels_to_model
from harmonize.errors import ConfigError
from harmonize.io.storage import Storage
from harmonize.training.checkpoint import check_resumable
from harmonize.training.loop import LoopOptions, run_training
from harmonize.training.task import TrainResult

#: What a resumed run must share with the checkpoint it continues (and the split's hash).
RESUME_KEYS = ("width", "input_size", "batch_size", "val_fraction")


def learning_rate(config: ClassifierConfig, step: int) -> float:
    """Cosine decay from ``lr`` at step 0 to 0 at ``steps``."""
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))


def evaluate(
    model: nn.Module, data: ClassifierData, indices: np.ndarray, device: torch.device
) -> dict[str, float | int]:
    """ROC AUC (scikit-learn), mean BCE and accuracy at 0.5 of ``model`` on the images at
    ``indices``, through the scoring path (``probabilities``)."""
    from sklearn.metrics import roc_auc_score

    scores = []
    for start in range(0, len(indices), EVAL_BATCH):
        batch = levels_to_model(data.images[indices[start : start + EVAL_BATCH]])[:, None]
        scores.append(probabilities(model, batch.to(device)).double().cpu())
    p = torch.cat(scores).numpy()
    y = data.labels[indices]
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    return {
        "auc": float(roc_auc_score(y, p)),
        "loss": float(loss),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "n": len(indices),
        **data.counts(indices),
    }


class ClassifierTask:
    """The classifier on ``data``, for ``run_training``.

    Raises:
        ConfigError: the data was prepared at another input size, or a class has too few
            images to split.
    """

    name = METHOD
    progress_keys = ("loss", "val_auc")
    model: nn.Module  # built by ``setup``
    net: nn.Module  # ``model`` as trained (DDP-wrapped in a distributed run)
    optimizer: torch.optim.Optimizer

    def __init__(self, config: ClassifierConfig, data: ClassifierData) -> None:
        if data.input_size != config.input_size:
            raise ConfigError(
                f"the classifier data was prepared at input_size {data.input_size}, the config "
                f"asks for {config.input_size}; prepare it again or set input_size: "
                f"{data.input_size}"
            )
        self.config, self.data = config, data
        self.split = data.split(config.val_fraction)
        self.ids = {
            "train": ids_digest([data.image_ids[i] for i in self.split.train]),
            "validation": ids_digest([data.image_ids[i] for i in self.split.validation]),
        }
        self.validation: dict[str, Any] | None = None
        self.device = torch.device("cpu")
        self.autocast = False
        self._lr = config.lr
        self._loss = nn.BCEWithLogitsLoss()

    def setup(
        self, device: torch.device, rank: int, wrap: Callable[[nn.Module], nn.Module] | None
    ) -> dict[str, Any]:
        config, resolved = self.config, self.config.resolved(device)
        self.device, self.autocast = device, resolved["precision"] == "bf16"
        self.model = build_classifier(config.model_config()).to(device)
        self.net = wrap(self.model) if wrap is not None else self.model  # shares its parameters
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        return resolved

    def train_step(self, step: int, sampler: np.random.Generator) -> dict[str, float]:
        config = self.config
        self._lr = learning_rate(config, step)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr
        x, y = sample_batch(
            self.data, self.split.train, sampler, config.batch_size, config.augmentation
        )
        self.net.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.net(x.to(self.device))
        loss = self._loss(logits.float(), y.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.item())}

    @property
    def learning_rate(self) -> float:
        return self._lr

    def evaluation_due(self, step: int) -> bool:
        return step % self.config.validate_every == 0 or step == self.config.steps

    def evaluate(self) -> dict[str, float]:
        self.validation = evaluate(self.model, self.data, self.split.validation, self.device)
        return {f"val_{k}": float(self.validation[k]) for k in ("auc", "loss", "accuracy")}

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": METHOD,
            "split": self.ids["train"] + self.ids["validation"],
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "validation": self.validation,
        }

    def load_state_dict(self, checkpoint: Mapping[str, Any], uri: str) -> None:
        check_resumable(uri, checkpoint, self.config.to_dict(), RESUME_KEYS, kind=METHOD)
        if checkpoint["split"] != self.ids["train"] + self.ids["validation"]:
            raise ConfigError(
                f'checkpoint "{uri}" was trained on other images (the archive or labels '
                "changed); use another --out, or resume=False to start over"
            )
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.validation = checkpoint["validation"]

    def rank_state(self) -> dict[str, Any]:
        return {}  # the loop's sampler and random streams are all a rank has of its own

    def load_rank_state(self, state: Mapping[str, Any]) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        data, split = self.data, self.split
        return {
            "archive_uri": data.archive_uri,
            "labels_uri": data.labels_uri,
            "n_images": {
                "train": data.counts(split.train),
                "validation": data.counts(split.validation),
            },
            "n_skipped": dict(data.skipped),
            "image_ids_sha256": dict(self.ids),
        }

    def finish(
        self, out_uri: str, storage: Storage, card: dict[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        card = {**card, "validation": self.validation}
        model_uri = save_classifier(
            out_uri, self.config.model_config(), self.model.state_dict(), card, storage
        )
        return model_uri, self.validation


def train_classifier(
    config: ClassifierConfig, data: ClassifierData, out_uri: str, **options: Unpack[LoopOptions]
) -> TrainResult:
    """Train the classifier on ``data`` with the one loop (``run_training``: its options,
    resume and outputs); ``classifier.json`` + ``weights.safetensors`` go under ``out_uri``.

    Raises:
        ConfigError: the data was prepared at another input size, a class has too few images
            to split, or the checkpoint to resume was trained with other settings or data.
    """
    return run_training(ClassifierTask(config, data), out_uri, **options)
