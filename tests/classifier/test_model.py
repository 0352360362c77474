"""The saved classifier: it scores like the trained network, one image's score never depends on
its batch, the card's AUC is the saved model's, and missing, changed or foreign models are
ModelErrors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from harmonize.classifier.data import ClassifierData
from harmonize.classifier.model import load_classifier
from harmonize.classifier.network import build_classifier, probabilities
from harmonize.errors import ModelError
from harmonize.imaging.preprocess import from_uint16, resize_short_side
from harmonize.io.storage import Storage
from harmonize.training.checkpoint import latest_checkpoint, load_checkpoint
from harmonize.training.task import TrainResult

from training_samples import SIZE


def test_the_saved_model_scores_like_the_trained_one(
    trained: tuple[str, TrainResult], toy: ClassifierData
) -> None:
    out, result = trained
    classifier = load_classifier(out)
    state = load_checkpoint(latest_checkpoint(out) or "", Storage())["model"]
    in_memory = build_classifier(classifier.model_config)
    in_memory.load_state_dict(state)
    rng = np.random.default_rng(5)
    # Display images of other sizes: the classifier resizes and crops them itself.
    images = [
        resize_short_side(from_uint16(levels), int(rng.integers(32, 48)))
        for levels in toy.images[:10]
    ]
    batch = torch.stack([classifier.preprocess(image) for image in images])
    expected = probabilities(in_memory, batch).double().numpy()
    scores = classifier.score(images)
    assert scores.dtype == np.float64 and scores.shape == (10,)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    # One image's score does not depend on the rest of its batch.
    alone = np.array([classifier.score([image])[0] for image in images])
    reversed_ = classifier.score(images[::-1])[::-1]
    classifier.batch_size = 3
    np.testing.assert_allclose(alone, scores, atol=1e-6)
    np.testing.assert_allclose(reversed_, scores, atol=1e-6)
    np.testing.assert_allclose(classifier.score(images), scores, atol=1e-6)
    # The validation AUC of the card is the AUC of the saved model's scores.
    from sklearn.metrics import roc_auc_score

    split = toy.split(0.2)
    held_out = [from_uint16(toy.images[i]) for i in split.validation]
    auc = roc_auc_score(toy.labels[split.validation], classifier.score(held_out))
    assert result.validation is not None and auc == pytest.approx(result.validation["auc"])
    assert classifier.score([]).shape == (0,)
    with pytest.raises(ModelError, match=r"\(N, 1, 32, 32\)"):
        classifier.score_tensor(torch.zeros(2, 1, 16, 16))


def test_missing_changed_or_foreign_models_are_model_errors(
    trained: tuple[str, TrainResult], tmp_path: Path
) -> None:
    with pytest.raises(
        ModelError, match="no classifier at .*train one first: `harmonize train classifier"
    ):
        load_classifier(str(tmp_path / "nothing"))
    copy = tmp_path / "copy"
    shutil.copytree(trained[0], copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    assert load_classifier(str(copy / "classifier.json")).input_size == SIZE  # the file URI too
    weights = load_file(copy / "weights.safetensors")
    weights["head.bias"] = weights["head.bias"] + 1.0
    save_file(weights, copy / "weights.safetensors")
    with pytest.raises(ModelError, match="SHA-256"):
        load_classifier(str(copy))
    harmonizer = tmp_path / "harmonizer"
    harmonizer.mkdir()
    (harmonizer / "harmonizer.json").write_text("{}")
    with pytest.raises(ModelError, match="holds a harmonizer"):
        load_classifier(str(harmonizer))
    doc = json.loads((copy / "classifier.json").read_text())
    (copy / "classifier.json").write_text(json.dumps({**doc, "method": "cyclegan"}))
    with pytest.raises(ModelError, match='holds a "cyclegan" model'):
        load_classifier(str(copy))
