"""The site detector: labels by site (1 = target), data from every site of an archive (its
truth images left out), trained with the one loop, and its AUC equal to scikit-learn's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from harmonize.classifier.data import prepare_classifier_data
from harmonize.classifier.model import load_classifier
from harmonize.classifier.site import site_auc, site_labels, write_site_labels
from harmonize.classifier.training import train_classifier
from harmonize.dicom.decode import decode_dicom
from harmonize.errors import ConfigError
from harmonize.synth import read_labels, synthesize_archive

from conftest import SOURCE, TARGET
from training_samples import classifier_config


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sites")
    synthesize_archive(
        str(root), [TARGET, SOURCE], 8, seed=4, matrix=64, progress=False, truth_site=TARGET
    )
    return root


def test_site_labels_mark_the_target_site_and_need_two_sites(two_sites: Path) -> None:
    table = read_labels(str(two_sites))
    labels = site_labels(table, TARGET)
    assert (labels.label == (labels.site == TARGET).astype(int)).all()
    assert sorted(labels.image_id) == sorted(table.image_id)
    with pytest.raises(ConfigError, match=r'needs images of "portable-like" and of another'):
        site_labels(table, "portable-like")
    with pytest.raises(ConfigError, match="lists mc-like$"):
        site_labels(table[table.site == SOURCE], SOURCE)


def test_a_site_detector_trains_on_both_sites_and_its_auc_is_sklearns(
    two_sites: Path, tmp_path: Path
) -> None:
    labels = write_site_labels(str(two_sites), TARGET, str(tmp_path / "site-labels.parquet"))
    assert pd.read_parquet(labels).label.sum() == 8
    data = prepare_classifier_data(str(two_sites), labels, 32, progress=False)
    assert sorted(np.bincount(data.labels)) == [8, 8]  # both sites, every image once
    assert data.skipped["unlabelled"] == 8  # the truth images are not part of it
    config = classifier_config(steps=4, input_size=32, width=4, validate_every=4)
    train_classifier(config, data, str(tmp_path / "detector"), progress=False)
    detector = load_classifier(str(tmp_path / "detector"))
    table = read_labels(str(two_sites))
    scores = {
        site: detector.score([_display(two_sites / p) for p in table[table.site == site].path])
        for site in (TARGET, SOURCE)
    }
    expected = roc_auc_score([1] * 8 + [0] * 8, np.concatenate([scores[TARGET], scores[SOURCE]]))
    assert site_auc(scores[TARGET], scores[SOURCE]) == pytest.approx(expected)


def _display(path: Path) -> np.ndarray:
    return decode_dicom(path.read_bytes()).pixels
