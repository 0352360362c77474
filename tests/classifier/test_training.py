"""Training the classifier: a toy task is learned, logged, validated and saved with its card;
resume refuses other settings and other images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmonize.classifier.data import ClassifierData
from harmonize.classifier.model import load_classifier
from harmonize.classifier.training import learning_rate, train_classifier
from harmonize.errors import ConfigError
from harmonize.models.files import model_hash
from harmonize.training.task import TrainResult

from training_samples import blob_data, classifier_config, logged


def test_a_toy_task_is_learned_and_saved_with_its_card(
    trained: tuple[str, TrainResult], toy: ClassifierData
) -> None:
    out, result = trained
    metrics = logged(out)
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert [m["step"] for m in metrics] == [5, 10, 15, 20, 25, 30]
    assert losses[-1] < 0.5 * losses[0]
    assert result.validation is not None and result.validation["auc"] > 0.9
    assert metrics[-1]["val_auc"] == result.validation["auc"]
    assert metrics[0]["lr"] == learning_rate(classifier_config(), 4)  # the LR of the step logged
    assert sorted(p.name for p in (Path(out) / "checkpoints").iterdir()) == [
        "step-0000015.pt",
        "step-0000030.pt",
    ]
    assert any((Path(out) / "tensorboard").iterdir())
    card = json.loads((Path(out) / "classifier.json").read_text())["card"]
    assert card["n_images"] == {
        "train": {"no_finding": 26, "finding": 26},
        "validation": {"no_finding": 6, "finding": 6},
    }
    assert card["validation"] == result.validation
    assert card["config"]["steps"] == 30 and card["code_version"]
    assert card["final_losses"] == result.losses == {"loss": losses[-1]}
    assert card["image_ids_sha256"]["train"] != card["image_ids_sha256"]["validation"]
    doc = json.loads((Path(out) / "classifier.json").read_text())
    assert load_classifier(out).model_hash == model_hash(doc["method"], doc["state"])


def test_resume_refuses_other_settings_and_other_images(
    tmp_path: Path, toy: ClassifierData
) -> None:
    out = str(tmp_path / "run")
    config = classifier_config(steps=2, validate_every=2, checkpoint_every=2)
    train_classifier(config, toy, out, progress=False, device="cpu")
    with pytest.raises(ConfigError, match="width"):
        train_classifier(classifier_config(steps=8, width=4), toy, out, progress=False)
    with pytest.raises(ConfigError, match="trained on other images"):
        train_classifier(config, blob_data(seed=1), out, progress=False, device="cpu")
    done = train_classifier(config, toy, out, progress=False, device="cpu")  # already done
    assert done.start_step == 2 and done.losses and done.validation is not None
