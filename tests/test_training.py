"""The training loop: config loading, in-memory training data, end-to-end train() with its
outputs (metrics, TensorBoard, checkpoints, model + card), and bit-exact resume after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonize.errors import ConfigError
from harmonize.imaging.preprocess import to_uint16
from harmonize.io.storage import Storage
from harmonize.models.registry import load_model
from harmonize.training import (
    TrainConfig,
    TrainingData,
    checkpoint_uri,
    latest_checkpoint,
    load_checkpoint,
    load_train_config,
    prepare_training_data,
    train,
)

from conftest import SOURCE, TARGET

TINY = {"ngf": 8, "ndf": 8, "n_blocks": 2}


def _config(**overrides) -> TrainConfig:
    values = {
        "steps": 10,
        "crop_size": 32,
        "load_size": 48,
        "log_every": 5,
        "checkpoint_every": 5,
        "model": TINY,
        "validation_images": 3,
    }
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harmonize.synth import synthesize_archive

    out = tmp_path_factory.mktemp("tiny-archive")
    synthesize_archive(str(out), [TARGET, SOURCE], 4, seed=5, matrix=128, progress=False)
    (out / SOURCE / "broken.dcm").write_bytes(b"not a DICOM file")
    return out


@pytest.fixture(scope="module")
def data(tiny_archive: Path) -> TrainingData:
    return prepare_training_data(
        str(tiny_archive / SOURCE), str(tiny_archive / TARGET), 48, progress=False
    )


def _levels_data(rng: np.random.Generator) -> TrainingData:
    """Source levels all below 30000, target levels all above 40000, mixed image shapes."""
    source = [rng.integers(0, 30000, (40, 52), dtype=np.uint16) for _ in range(3)]
    target = [rng.integers(40000, 65536, (44, 40), dtype=np.uint16) for _ in range(2)]
    return TrainingData(source, target, load_size=40, source_uri="a", target_uri="b")


# -- config ----------------------------------------------------------------------------------------
def test_every_setting_comes_from_yaml_and_overrides_win(tmp_path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(
        "steps: 300\ndecay_start: 100\nbatch_size: 2\ncrop_size: 64\nload_size: 72\nflip: true\n"
        "seed: 9\nlog_every: 10\ncheckpoint_every: 50\nprecision: fp32\nchannels_last: false\n"
        "compile: false\nvalidation_images: 2\nmodel: {ngf: 16, lambda_identity: 0.0}\n"
    )
    config = load_train_config(str(path), steps=None, crop_size=32, model={"n_blocks": 3})
    assert config.steps == 300 and config.decay_start_step == 100 and config.crop_size == 32
    assert (config.batch_size, config.load_size, config.flip, config.seed) == (2, 72, True, 9)
    assert (config.log_every, config.checkpoint_every, config.validation_images) == (10, 50, 2)
    assert (config.precision, config.channels_last, config.compile) == ("fp32", False, False)
    assert dict(config.model) == {"ngf": 16, "lambda_identity": 0.0, "n_blocks": 3}
    assert load_train_config().to_dict() == TrainConfig().to_dict()
    assert TrainConfig(steps=1000).decay_start_step == 500


def test_bad_settings_are_config_errors_that_name_them(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("steps: 10\nlearning_rate: 0.1\ncrop: 3\n")
    with pytest.raises(ConfigError, match=r"\['crop', 'learning_rate'\]"):
        load_train_config(str(path))
    with pytest.raises(ConfigError, match=r"\['stepz'\]"):
        load_train_config(stepz=3)
    with pytest.raises(ConfigError, match="ngff"):
        load_train_config(model={"ngff": 8})
    with pytest.raises(ConfigError, match="multiple of 4"):
        TrainConfig(crop_size=250)
    with pytest.raises(ConfigError, match="larger than load_size"):
        TrainConfig(crop_size=256, load_size=200)
    with pytest.raises(ConfigError, match="munit"):
        TrainConfig(method="munit")
    with pytest.raises(ConfigError, match="decay_start"):
        TrainConfig(steps=10, decay_start=11)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config(str(tmp_path / "list.yaml"))


# -- training data ---------------------------------------------------------------------------------
def test_prepare_decodes_and_resizes_both_sites_and_counts_unreadable(data) -> None:
    assert len(data.source) == 4 and len(data.target) == 4
    assert data.unreadable == {"source": 1, "target": 0}
    for image in data.source + data.target:
        assert image.dtype == np.uint16 and min(image.shape) == 48
    assert data.source_uri.endswith(SOURCE) and data.target_uri.endswith(TARGET)
    limited = prepare_training_data(data.source_uri, data.target_uri, 48, limit=2, progress=False)
    assert len(limited.source) == 2 and len(limited.target) == 2


def test_training_data_round_trips_through_one_npz(tmp_path, data) -> None:
    uri = str(tmp_path / "cache" / "data.npz")
    data.save(uri)
    with np.load(uri, allow_pickle=False) as npz:  # no pickled objects inside
        assert set(npz.files) >= {"meta", "source_levels", "target_shapes"}
    loaded = TrainingData.load(uri, Storage())
    for ours, theirs in ((loaded.source, data.source), (loaded.target, data.target)):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    assert (loaded.load_size, loaded.unreadable) == (data.load_size, data.unreadable)
    assert (loaded.source_uri, loaded.target_uri) == (data.source_uri, data.target_uri)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="training-data"):
        TrainingData.load(str(tmp_path / "junk.npz"))


def test_sample_gives_unpaired_crops_of_each_site_in_model_range() -> None:
    data = _levels_data(np.random.default_rng(0))
    real_a, real_b = data.sample(np.random.default_rng(1), 4, 32)
    assert real_a.shape == real_b.shape == (4, 1, 32, 32)
    assert real_a.dtype == torch.float32
    assert real_a.min() >= -1 and real_b.max() <= 1
    assert real_a.max() < 30000 / 65535 * 2 - 1 < 40000 / 65535 * 2 - 1 < real_b.min()
    for crops, images in ((real_a, data.source), (real_b, data.target)):
        for crop in crops:  # every crop is a window of one image of its own site
            levels = to_uint16((crop[0].numpy() + 1) / 2)
            assert any(_contains(image, levels) for image in images)
    again = data.sample(np.random.default_rng(1), 4, 32)
    assert torch.equal(again[0], real_a) and torch.equal(again[1], real_b)
    pairs = set()
    rng = np.random.default_rng(2)
    for _ in range(40):  # a and b images are drawn independently
        a, b = data.sample(rng, 1, 40)
        pairs.add((float(a[0, 0, 0, 0]), float(b[0, 0, 0, 0])))
    assert len(pairs) > 10


def _contains(image: np.ndarray, window: np.ndarray) -> bool:
    size = window.shape[0]
    for top in range(image.shape[0] - size + 1):
        for left in range(image.shape[1] - size + 1):
            if np.array_equal(image[top : top + size, left : left + size], window):
                return True
    return False


# -- train -----------------------------------------------------------------------------------------
def test_train_writes_metrics_checkpoints_and_a_model_with_its_card(tmp_path, data) -> None:
    out = str(tmp_path / "run")
    reports: list[tuple[int, dict[str, float]]] = []
    result = train(
        _config(),
        data,
        out,
        report=lambda metrics, step: reports.append((step, metrics)),
        progress=False,
    )
    lines = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [line["step"] for line in lines] == [5, 10]
    loss_names = {"gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g_total"}
    assert loss_names | {"d_a", "d_b", "lr", "seconds_per_step"} <= set(lines[0])
    assert [step for step, _ in reports] == [5, 10] and reports[1][1] == {
        k: v for k, v in lines[1].items() if k != "step"
    }
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
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
    assert card["config"]["model"] == TINY and card["config"]["steps"] == 10
    assert card["code_version"] and card["train_seconds"] > 0
    assert card["final_losses"] == result.losses
    validation = card["validation"]
    assert validation["n_images"] == 3
    assert -1 <= validation["ssim_mean"] <= 1 and validation["ssim_std"] >= 0
    assert validation["w1_to_target_before"] >= 0 and validation["w1_to_target_after"] >= 0
    histogram = np.asarray(card["target_histogram"])
    assert histogram.shape == (64,) and histogram.sum() == pytest.approx(1.0)
    harmonized = model.harmonizer.transform(data.source[0].astype(np.float32) / 65535)
    assert harmonized.shape == data.source[0].shape  # the saved generator runs at inference


def test_resume_after_a_crash_continues_exactly(tmp_path, data) -> None:
    config = _config(steps=6, log_every=1, checkpoint_every=3, model={**TINY, "pool_size": 2})
    straight = str(tmp_path / "straight")
    train(config, data, straight, progress=False)

    class Crash(Exception):
        pass

    def crash_at_step_5(metrics: dict[str, float], step: int) -> None:
        if step == 5:
            raise Crash

    crashed = str(tmp_path / "crashed")
    with pytest.raises(Crash):
        train(config, data, crashed, report=crash_at_step_5, progress=False)
    assert latest_checkpoint(crashed) == checkpoint_uri(crashed, 3)
    result = train(config, data, crashed, progress=False)  # a new recipe, resumed from step 3
    assert result.start_step == 3

    def metrics(run: str) -> list[dict[str, float]]:
        lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds_per_step"} for x in lines]

    assert [m["step"] for m in metrics(crashed)] == [1, 2, 3, 4, 5, 6]  # step 4-5 logged once
    assert metrics(crashed) == metrics(straight)
    ours = load_checkpoint(checkpoint_uri(crashed, 6), Storage())["recipe"]
    theirs = load_checkpoint(checkpoint_uri(straight, 6), Storage())["recipe"]
    for part in ("generators", "discriminators"):
        for name, value in ours[part].items():
            assert torch.equal(value, theirs[part][name]), name
    for pool in ("pool_a", "pool_b"):
        for a, b in zip(ours[pool]["images"], theirs[pool]["images"], strict=True):
            assert torch.equal(a, b)


def test_resume_refuses_other_model_settings_and_other_load_sizes(tmp_path, data) -> None:
    out = str(tmp_path / "run")
    train(_config(steps=2, validation_images=0), data, out, progress=False)
    with pytest.raises(ConfigError, match="model"):
        train(_config(steps=4, model={**TINY, "ngf": 4}), data, out, progress=False)
    with pytest.raises(ConfigError, match="load_size"):
        train(_config(load_size=64), data, out, progress=False)
    result = train(_config(steps=2), data, out, resume=True, progress=False)  # already done
    assert result.start_step == 2 and result.losses


@pytest.mark.slow
def test_train_to_s3_writes_everything_there_and_resumes_from_it(s3_server, data) -> None:
    from harmonize.io.storage import join

    storage = Storage(endpoint_url=s3_server.endpoint_url)
    out = join(s3_server.create_bucket("training-test"), "cyclegan")
    result = train(_config(steps=4, log_every=2, checkpoint_every=2), data, out, storage=storage)
    names = {o.uri.removeprefix(out + "/") for o in storage.list(out)}
    assert {"metrics.jsonl", "harmonizer.json", "weights.safetensors"} <= names
    assert {"checkpoints/step-0000002.pt", "checkpoints/step-0000004.pt"} <= names
    assert any(name.startswith("tensorboard/events.out.tfevents.") for name in names)
    assert result.checkpoint_uri == latest_checkpoint(out, storage)
    assert load_model(out, storage).card["n_images"] == {"source": 4, "target": 4}
    longer = train(_config(steps=6, log_every=2, checkpoint_every=2), data, out, storage=storage)
    assert longer.start_step == 4 and latest_checkpoint(out, storage) == checkpoint_uri(out, 6)
    steps = [
        json.loads(x)["step"]
        for x in storage.read_text(join(out, "metrics.jsonl")).split("\n")
        if x
    ]
    assert steps == [2, 4, 6]
