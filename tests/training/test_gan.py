"""Training a GAN end to end: metrics, TensorBoard, checkpoints, the saved model and its card,
whose validation is what `harmonize run` measures in each mode, and resume refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harmonize.errors import ConfigError
from harmonize.io.storage import Storage
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram, wasserstein_1d
from harmonize.metrics.ssim import SSIM_OPTIONS, ssim
from harmonize.models.registry import load_model
from harmonize.training.checkpoint import checkpoint_uri, latest_checkpoint, load_checkpoint
from harmonize.training.gan import train
from harmonize.training.task import TrainResult

from training_samples import GAN_TINY, gan_config


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[str, TrainResult, list]:
    out = str(tmp_path_factory.mktemp("gan") / "run")
    reports: list[tuple[int, dict[str, float]]] = []
    result = train(
        gan_config(), data, out, report=lambda m, step: reports.append((step, m)), progress=False
    )
    return out, result, reports


def test_train_writes_metrics_checkpoints_and_a_model_with_its_card(trained, data) -> None:
    out, result, reports = trained
    lines = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [5, 10]
    loss_names = {"gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g_total"}
    assert loss_names | {"d_a", "d_b", "lr", "seconds_per_step"} <= set(lines[0])
    assert [step for step, _ in reports] == [5, 10] and reports[1][1] == {
        k: v for k, v in lines[1].items() if k != "step"
    }
    assert list((Path(out) / "tensorboard").glob("events.out.tfevents.*"))
    assert result.checkpoint_uri == checkpoint_uri(out, 10) == latest_checkpoint(out)
    assert Path(checkpoint_uri(out, 5)).exists()
    checkpoint = load_checkpoint(result.checkpoint_uri, Storage())  # weights_only=True
    assert checkpoint["step"] == 10 and checkpoint["config"]["decay_start"] == 5
    assert checkpoint["config"]["precision"] == "fp32"
    assert result.losses == {k: v for k, v in lines[1].items() if k in result.losses}
    assert (result.steps, result.start_step) == (10, 0)

    model = load_model(out, expected_method="cyclegan")
    card = model.card
    assert result.model_uri == str(Path(out) / "harmonizer.json")
    assert card["n_images"] == {"source": 4, "target": 4}
    assert card["n_unreadable"] == {"source": 1, "target": 0}
    assert card["source_uri"] == data.source_uri and card["target_uri"] == data.target_uri
    assert card["config"]["model"] == GAN_TINY and card["config"]["steps"] == 10
    assert card["code_version"] and card["train_seconds"] > 0
    assert card["final_losses"] == result.losses
    validation = card["validation"]
    assert validation["n_images"] == 3 and validation == result.validation
    assert -1 <= validation["ssim_mean"] <= 1 and validation["ssim_std"] >= 0
    assert validation["w1_to_target_before"] >= 0 and validation["w1_to_target_after"] >= 0
    histogram = np.asarray(card["target_histogram"])
    assert histogram.shape == (64,) and histogram.sum() == pytest.approx(1.0)
    harmonized = model.harmonizer.transform(data.source[0].astype(np.float32) / 65535)
    assert harmonized.shape == data.source[0].shape  # the saved generator runs at inference


@pytest.mark.parametrize("mode", ["direct", "curve"])
def test_the_cards_validation_is_what_run_measures_in_that_mode(trained, data, mode) -> None:
    out, _, _ = trained
    model = load_model(out, expected_method="cyclegan", mode=mode)  # what `harmonize run` loads
    card = model.card
    target = np.asarray(card["target_histogram"])
    originals = [levels.astype(np.float32) / 65535 for levels in data.source[:3]]
    harmonized = [model.harmonizer.transform(image) for image in originals]
    scores = [float(ssim(a, b, **SSIM_OPTIONS)) for a, b in zip(originals, harmonized, strict=True)]
    after = [wasserstein_1d(intensity_histogram(h, bins=HIST_BINS), target) for h in harmonized]
    measured = card["validation"]["modes"][mode]
    assert measured["ssim_mean"] == pytest.approx(np.mean(scores), abs=1e-5)
    assert measured["w1_to_target_after"] == pytest.approx(np.mean(after), abs=1e-5)
    if mode == "direct":  # the card's top-level numbers are direct mode's
        assert card["validation"]["ssim_mean"] == measured["ssim_mean"]


def test_resume_refuses_other_model_settings_and_other_load_sizes(tmp_path, data) -> None:
    out = str(tmp_path / "run")
    train(gan_config(steps=2, validation_images=0), data, out, progress=False)
    with pytest.raises(ConfigError, match="model"):
        train(gan_config(steps=4, model={**GAN_TINY, "ngf": 4}), data, out, progress=False)
    with pytest.raises(ConfigError, match="load_size"):
        train(gan_config(load_size=64), data, out, progress=False)
    result = train(gan_config(steps=2), data, out, resume=True, progress=False)  # already done
    assert result.start_step == 2 and result.losses
