"""Fixtures of the classifier tests: the toy blob task, a classifier trained on it, and a small
labelled DICOM archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmonize.classifier.data import ClassifierData
from harmonize.classifier.training import train_classifier
from harmonize.training.task import TrainResult

from training_samples import blob_data, classifier_config, labelled_archive


@pytest.fixture(scope="session")
def toy() -> ClassifierData:
    return blob_data()


@pytest.fixture(scope="session")
def trained(
    toy: ClassifierData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, TrainResult]:
    """The toy task trained for 30 steps (validated and saved at 15 and 30)."""
    out = str(tmp_path_factory.mktemp("toy-classifier"))
    return out, train_classifier(classifier_config(), toy, out, progress=False, device="cpu")


@pytest.fixture(scope="session")
def dicom_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_archive(tmp_path_factory.mktemp("clf-archive"))
