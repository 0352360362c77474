"""What the experiment trains: the target-site classifier and every method (a classical one
fitted on the target site, a neural one trained on both sites' unpaired images)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harmonize.classifier.config import ClassifierConfig
from harmonize.experiments.config import ExperimentConfig
from harmonize.io.storage import Storage, join
from harmonize.models.registry import CLASSICAL, METHODS


def classifier_settings(config: ExperimentConfig, store: Storage) -> ClassifierConfig:
    """The classifier's training settings; the site detector trains with the same ones."""
    from harmonize.classifier.config import load_classifier_config

    return load_classifier_config(
        config.classifier_config_path(), store, steps=config.classifier_steps
    )


def train_target_classifier(
    settings: ClassifierConfig,
    train_archive: str,
    target: str,
    model_uri: str,
    store: Storage,
    progress: bool,
) -> float:
    """Train the classifier on the target site's training images; its validation AUC."""
    from harmonize.classifier.data import prepare_classifier_data
    from harmonize.classifier.training import train_classifier

    data = prepare_classifier_data(
        join(train_archive, target),
        join(train_archive, "labels.parquet"),
        settings.input_size,
        storage=store,
        progress=progress,
    )
    result = train_classifier(
        settings, data, model_uri, storage=store, resume=False, progress=progress
    )
    return float((result.validation or {})["auc"])


def fit(
    config: ExperimentConfig,
    method: str,
    source: str,
    target: str,
    model_uri: str,
    store: Storage,
    echo: Callable[[str], Any],
    progress: bool,
) -> None:
    """Fit a classical method on the target site's training images (``target``), or train a
    neural one on both sites' (``source`` → ``target``)."""
    from harmonize.methods.fit import fit_classical
    from harmonize.training.config import load_train_config
    from harmonize.training.data import prepare_training_data
    from harmonize.training.gan import train

    if METHODS[method].kind == CLASSICAL:
        fit_classical(method, target, model_uri, storage=store, progress=progress)
        return
    gan_config = load_train_config(
        config.gan_config(method), store, method=method, steps=config.gan_steps
    )
    data = prepare_training_data(
        source, target, gan_config.load_size, storage=store, progress=progress
    )
    result = train(gan_config, data, model_uri, storage=store, resume=False, progress=progress)
    if result.validation:
        echo(
            f"    validation SSIM {result.validation['ssim_mean']:.3f}, W1 to target "
            f"{result.validation['w1_to_target_before']:.3f} → "
            f"{result.validation['w1_to_target_after']:.3f}"
        )
