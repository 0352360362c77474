"""Tiny training configs, toy data and helpers shared by the tests of training/, classifier/ and
the Ray Train driver (imported as ``training_samples``; tests/ is on the path)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from harmonize.classifier.config import ClassifierConfig
from harmonize.classifier.data import ClassifierData
from harmonize.imaging.preprocess import to_uint16
from harmonize.training.config import TrainConfig

from conftest import TARGET

GAN_TINY = {"ngf": 8, "ndf": 8, "n_blocks": 2}
SIZE = 32  # the classifier's toy input size


def gan_config(**overrides: Any) -> TrainConfig:
    """A CycleGAN that trains in seconds on 48-px images (10 steps, logged and saved every 5)."""
    values = {
        "steps": 10,
        "crop_size": 32,
        "load_size": 48,
        "log_every": 5,
        "checkpoint_every": 5,
        "model": GAN_TINY,
        "validation_images": 3,
    }
    return TrainConfig(**{**values, **overrides})


def classifier_config(**overrides: Any) -> ClassifierConfig:
    """A narrow classifier for ``blob_data`` (30 steps, validated and saved every 15)."""
    values: dict[str, Any] = {
        "steps": 30,
        "batch_size": 16,
        "lr": 0.003,
        "input_size": SIZE,
        "width": 8,
        "log_every": 5,
        "validate_every": 15,
        "checkpoint_every": 15,
        "augmentation": {"shift": 0.05, "scale": 0.05, "flip": True},
    }
    return ClassifierConfig(**{**values, **overrides})


def blob_data(n: int = 64, seed: int = 0) -> ClassifierData:
    """A learnable toy task: noisy grey images, half with a bright Gaussian blob (label 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, labels = [], []
    for i in range(n):
        image = 0.3 + 0.1 * rng.random() + rng.normal(0.0, 0.03, (SIZE, SIZE))
        if i % 2:
            cy, cx = rng.uniform(8, SIZE - 8, 2)
            image += 0.4 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
        images.append(to_uint16(image))
        labels.append(i % 2)
    ids = [f"1.2.826.0.1.{seed}.{i}" for i in range(n)]
    return ClassifierData(np.stack(images), np.array(labels), ids, SIZE, "toy://a", "toy://l")


def labelled_archive(out: Path) -> Path:
    """8 labelled synthetic target-site images at 64 px under ``out``, one broken object, and
    ``labels-7.parquet``, which leaves the first image unlabelled."""
    from harmonize.synth import synthesize_archive

    synthesize_archive(str(out), [TARGET], 8, seed=3, matrix=64, progress=False)
    (out / TARGET / "broken.dcm").write_bytes(b"not a DICOM file")
    table = pd.read_parquet(out / "labels.parquet")
    table.iloc[1:].to_parquet(out / "labels-7.parquet", index=False)
    return out


def logged(out: str | Path) -> list[dict[str, float]]:
    """The lines of ``OUT/metrics.jsonl`` without their timings."""
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds_per_step"} for x in lines]


def assert_same_state(ours: Any, theirs: Any, where: str = "") -> None:
    """Every tensor and value of two nested states is equal."""
    if isinstance(ours, torch.Tensor):
        assert torch.equal(ours, theirs), where
    elif isinstance(ours, Mapping):
        assert set(ours) == set(theirs), where
        for key in ours:
            assert_same_state(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list | tuple):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same_state(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs, where


class Crash(Exception):
    """What ``crash_at`` raises."""


def crash_at(step: int) -> Any:
    """A ``report`` callback that crashes the run when it reports ``step``."""

    def report(metrics: dict[str, float], at: int) -> None:
        if at == step:
            raise Crash

    return report
