"""Fixtures of the training tests: a tiny two-site DICOM archive and its decoded training data."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmonize.training.data import TrainingData, prepare_training_data

from conftest import SOURCE, TARGET


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 images per site at 128 px, and one broken object in the source site."""
    from harmonize.synth import synthesize_archive

    out = tmp_path_factory.mktemp("tiny-archive")
    synthesize_archive(str(out), [TARGET, SOURCE], 4, seed=5, matrix=128, progress=False)
    (out / SOURCE / "broken.dcm").write_bytes(b"not a DICOM file")
    return out


@pytest.fixture(scope="session")
def data(tiny_archive: Path) -> TrainingData:
    return prepare_training_data(
        str(tiny_archive / SOURCE), str(tiny_archive / TARGET), 48, progress=False
    )
