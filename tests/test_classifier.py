"""The target-site classifier: config, preprocessing, the ResNet-18 layout, labels joined by
SOPInstanceUID, the hash split, learning a toy task, exact resume, the saved model and its scores,
Ray Train and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from harmonize.classifier import (
    Augmentation,
    ClassifierConfig,
    ClassifierData,
    ClassifierResult,
    ResNetClassifier,
    build_classifier,
    center_square,
    classifier_levels,
    levels_to_model,
    load_classifier,
    load_classifier_config,
    prepare_classifier_data,
    probabilities,
    sample_batch,
    split_by_image_id,
    train_classifier,
)
from harmonize.cli import main
from harmonize.errors import ConfigError, ModelError
from harmonize.imaging.preprocess import from_uint16, resize_short_side, to_model_range, to_uint16
from harmonize.io.storage import Storage
from harmonize.models.files import model_hash
from harmonize.training import checkpoint_uri, latest_checkpoint, load_checkpoint

from conftest import TARGET

SIZE = 32


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


def _config(**overrides: object) -> ClassifierConfig:
    values: dict[str, object] = {
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
    return ClassifierConfig(**{**values, **overrides})  # type: ignore[arg-type]


def _metrics(out: str | Path) -> list[dict[str, float]]:
    lines = (Path(out) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds_per_step"} for x in lines]


@pytest.fixture(scope="module")
def toy() -> ClassifierData:
    return blob_data()


@pytest.fixture(scope="module")
def trained(
    toy: ClassifierData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, ClassifierResult]:
    out = str(tmp_path_factory.mktemp("toy-classifier"))
    return out, train_classifier(_config(), toy, out, progress=False, device="cpu")


@pytest.fixture(scope="module")
def dicom_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 labelled synthetic images at 64 px, one broken object, one image without a label."""
    from harmonize.synth import synthesize_archive

    out = tmp_path_factory.mktemp("clf-archive")
    synthesize_archive(str(out), [TARGET], 8, seed=3, matrix=64, progress=False)
    (out / TARGET / "broken.dcm").write_bytes(b"not a DICOM file")
    table = pd.read_parquet(out / "labels.parquet")
    table.iloc[1:].to_parquet(out / "labels-7.parquet", index=False)  # row 0's image: unlabelled
    return out


# -- config ----------------------------------------------------------------------------------------
def test_config_comes_from_yaml_with_overrides_and_names_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nlr: 1e-3\ninput_size: 64\naugmentation: {flip: false}\n")
    config = load_classifier_config(path, steps=9, width=None, augmentation={"shift": 0.0})
    assert (config.steps, config.lr, config.input_size, config.width) == (9, 0.001, 64, 64)
    assert config.augmentation == Augmentation(shift=0.0, scale=0.1, flip=False)
    shipped = load_classifier_config(Path(__file__).parents[1] / "jobs/configs/classifier.yaml")
    assert shipped == ClassifierConfig()  # the YAML documents the defaults
    path.write_text("steps: 7\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown classifier settings \['learning_rate'\]"):
        load_classifier_config(path)
    with pytest.raises(ConfigError, match=r"unknown augmentation settings \['contrast'\]"):
        load_classifier_config(None, augmentation={"contrast": 0.2})
    for bad in ({"val_fraction": 1.0}, {"input_size": 16}, {"lr": "fast"}, {"steps": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            load_classifier_config(None, **bad)


# -- preprocessing and network ---------------------------------------------------------------------
def test_preprocessing_resizes_the_short_side_and_center_crops_to_a_square() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((90, 60), dtype=np.float32)
    levels = classifier_levels(image, 40)
    resized = resize_short_side(image, 40)
    assert resized.shape == (60, 40) and levels.shape == (40, 40) and levels.dtype == np.uint16
    np.testing.assert_array_equal(levels, to_uint16(resized[10:50]))
    x = levels_to_model(levels)
    np.testing.assert_allclose(x.numpy(), to_model_range(resized[10:50]), atol=2e-5)
    assert center_square(np.ones((3, 5)), 4).shape == (4, 4)  # padded where too small
    with pytest.raises(ModelError, match="2-D"):
        classifier_levels(np.zeros((2, 8, 8)), 32)


def test_the_network_has_resnet18s_layout() -> None:
    # torchvision's resnet18 has 11 689 512 parameters: 3 input channels (9 408 stem weights)
    # and 1000 classes (513 000 head weights). One channel and one logit: 3 136 and 513.
    model = ResNetClassifier(width=64)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512 - 9_408 + 3_136 - 513_000 + 513
    assert [len(list(stage.children())) for stage in model.stages] == [2, 2, 2, 2]
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2,)
    with pytest.raises(ModelError, match="unknown"):
        build_classifier({"width": 8, "input_size": 32, "depth": 50})


def test_augmentation_is_geometric_only() -> None:
    data = blob_data(8)
    flat = ClassifierData(
        np.full((8, SIZE, SIZE), 30000, np.uint16), data.labels, data.image_ids, SIZE
    )
    rng = np.random.default_rng(0)
    x, y = sample_batch(flat, np.arange(8), rng, 6, Augmentation(0.1, 0.1, True))
    # Shifts, zooms and flips of a constant image leave every pixel's value as it was.
    np.testing.assert_allclose(x.numpy(), 30000 / 65535 * 2 - 1, atol=1e-6)
    assert x.shape == (6, 1, SIZE, SIZE) and set(y.tolist()) <= {0.0, 1.0}
    # Without augmentation a batch is the stored images; with it, they move.
    none, some = Augmentation(0, 0, False), Augmentation(0.1, 0.1, True)
    plain, _ = sample_batch(data, np.arange(8), np.random.default_rng(0), 4, none)
    moved, _ = sample_batch(data, np.arange(8), np.random.default_rng(0), 4, some)
    pick = np.arange(8)[np.random.default_rng(0).integers(8, size=4)]
    np.testing.assert_array_equal(plain[:, 0].numpy(), levels_to_model(data.images[pick]).numpy())
    assert not torch.allclose(moved, plain, atol=1e-3)


# -- data: labels and split ------------------------------------------------------------------------
def test_labels_are_joined_by_sop_instance_uid_whatever_the_table_order(
    dicom_archive: Path,
) -> None:
    labels = pd.read_parquet(dicom_archive / "labels-7.parquet")
    data = prepare_classifier_data(
        str(dicom_archive / TARGET), str(dicom_archive / "labels-7.parquet"), 32, progress=False
    )
    assert data.skipped == {"unlabelled": 1, "unreadable": 1, "duplicate": 0}
    assert len(data.image_ids) == 7 and data.images.shape == (7, 32, 32)
    expected = dict(zip(labels["image_id"], labels["label"].astype(int), strict=True))
    assert dict(zip(data.image_ids, data.labels.tolist(), strict=True)) == expected
    # Each image is its own DICOM's pixels, preprocessed the way scoring does it.
    from harmonize.dicom.decode import decode_dicom

    first = decode_dicom((dicom_archive / TARGET / f"{data.image_ids[0]}.dcm").read_bytes())
    np.testing.assert_array_equal(data.images[0], classifier_levels(first.pixels, 32))

    shuffled = labels.sample(frac=1.0, random_state=7).reset_index(drop=True)
    shuffled.to_csv(dicom_archive / "shuffled.csv", index=False)
    again = prepare_classifier_data(
        str(dicom_archive / TARGET), str(dicom_archive / "shuffled.csv"), 32, progress=False
    )
    assert again.image_ids == data.image_ids
    np.testing.assert_array_equal(again.labels, data.labels)
    np.testing.assert_array_equal(again.images, data.images)


def test_bad_label_inputs_say_what_is_wrong(dicom_archive: Path, tmp_path: Path) -> None:
    archive = str(dicom_archive / TARGET)
    with pytest.raises(ConfigError, match="cannot read the labels table"):
        prepare_classifier_data(archive, str(tmp_path / "nope.parquet"), 32, progress=False)
    labels = pd.read_parquet(dicom_archive / "labels.parquet")
    other = labels.assign(image_id=labels["image_id"] + ".9")
    other.to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ConfigError, match="none of the 9 objects .* has a label"):
        prepare_classifier_data(archive, str(tmp_path / "other.parquet"), 32, progress=False)
    labels.assign(label=1).to_parquet(tmp_path / "ones.parquet")
    with pytest.raises(ConfigError, match="all 8 labelled images .* have label 1"):
        prepare_classifier_data(archive, str(tmp_path / "ones.parquet"), 32, progress=False)
    labels.assign(label=2).to_parquet(tmp_path / "twos.parquet")
    with pytest.raises(ConfigError, match=r"must be 0 or 1, found \[2\]"):
        prepare_classifier_data(archive, str(tmp_path / "twos.parquet"), 32, progress=False)


def test_split_is_deterministic_disjoint_and_stratified(toy: ClassifierData) -> None:
    split = toy.split(0.25)
    assert set(split.train).isdisjoint(split.validation)
    assert sorted([*split.train, *split.validation]) == list(range(len(toy.image_ids)))
    assert toy.counts(split.validation) == {"no_finding": 8, "finding": 8}
    # The same images in another order land on the same side.
    order = np.random.default_rng(3).permutation(len(toy.image_ids))
    ids = [toy.image_ids[i] for i in order]
    permuted = split_by_image_id(ids, toy.labels[order], 0.25)
    assert {ids[i] for i in permuted.validation} == {toy.image_ids[i] for i in split.validation}
    with pytest.raises(ConfigError, match="at least 2 of each class"):
        split_by_image_id(["a", "b", "c"], np.array([0, 0, 1]), 0.2)


# -- training --------------------------------------------------------------------------------------
def test_a_toy_task_is_learned_and_saved_with_its_card(
    trained: tuple[str, ClassifierResult], toy: ClassifierData
) -> None:
    out, result = trained
    metrics = _metrics(out)
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert [m["step"] for m in metrics] == [5, 10, 15, 20, 25, 30]
    assert losses[-1] < 0.5 * losses[0]
    assert result.validation_auc > 0.9
    assert metrics[-1]["val_auc"] == result.validation_auc
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
    assert card["image_ids_sha256"]["train"] != card["image_ids_sha256"]["validation"]
    doc = json.loads((Path(out) / "classifier.json").read_text())
    assert load_classifier(out).model_hash == model_hash(doc["method"], doc["state"])


def test_the_saved_model_scores_like_the_trained_one(
    trained: tuple[str, ClassifierResult], toy: ClassifierData
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
    assert auc == pytest.approx(result.validation_auc)
    assert classifier.score([]).shape == (0,)
    with pytest.raises(ModelError, match=r"\(N, 1, 32, 32\)"):
        classifier.score_tensor(torch.zeros(2, 1, 16, 16))


def test_resume_after_a_crash_continues_exactly(tmp_path: Path, toy: ClassifierData) -> None:
    config = _config(steps=6, log_every=1, validate_every=3, checkpoint_every=3)
    straight = str(tmp_path / "straight")
    train_classifier(config, toy, straight, progress=False, device="cpu")

    class Crash(Exception):
        pass

    def crash_at_step_5(metrics: dict[str, float], step: int) -> None:
        if step == 5:
            raise Crash

    crashed = str(tmp_path / "crashed")
    with pytest.raises(Crash):
        train_classifier(config, toy, crashed, report=crash_at_step_5, progress=False, device="cpu")
    assert latest_checkpoint(crashed) == checkpoint_uri(crashed, 3)
    result = train_classifier(config, toy, crashed, progress=False, device="cpu")
    assert result.start_step == 3
    assert [m["step"] for m in _metrics(crashed)] == [1, 2, 3, 4, 5, 6]
    assert _metrics(crashed) == _metrics(straight)  # step 4's loss included: the same next step
    ours = load_checkpoint(checkpoint_uri(crashed, 6), Storage())["model"]
    theirs = load_checkpoint(checkpoint_uri(straight, 6), Storage())["model"]
    for name, value in ours.items():
        assert torch.equal(value, theirs[name]), name
    with pytest.raises(ConfigError, match="width"):
        train_classifier(_config(steps=8, width=4), toy, crashed, progress=False, device="cpu")


# -- loading errors --------------------------------------------------------------------------------
def test_missing_changed_or_foreign_models_are_model_errors(
    trained: tuple[str, ClassifierResult], tmp_path: Path
) -> None:
    import shutil

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


# -- Ray Train and the CLI -------------------------------------------------------------------------
@pytest.mark.slow
def test_ray_train_writes_a_model_that_loads(
    ray_session: object, dicom_archive: Path, tmp_path: Path
) -> None:
    from harmonize.distributed.train import train_classifier_distributed

    config = _config(steps=4, log_every=2, validate_every=2, checkpoint_every=2, width=4)
    out = tmp_path / "classifier"
    summary = train_classifier_distributed(
        config,
        str(dicom_archive / TARGET),
        str(dicom_archive / "labels.parquet"),
        str(out),
        workers=2,
        storage=Storage(),
        progress=False,
    )
    assert (summary["steps"], summary["workers"], summary["start_step"]) == (4, 2, 0)
    assert summary["n_images"]["validation"] == {"no_finding": 1, "finding": 1}
    assert summary["n_skipped"] == {"unlabelled": 0, "unreadable": 1, "duplicate": 0}
    classifier = load_classifier(str(out))
    assert classifier.card["world_size"] == 2
    assert classifier.card["validation"] == summary["validation"]
    assert [m["step"] for m in _metrics(out)] == [2, 4]
    assert Path(summary["data_uri"]).parent == out / "cache"
    scores = classifier.score([np.full((70, 64), 0.5, np.float32)])
    assert 0.0 <= scores[0] <= 1.0


def test_cli_exits_2_with_a_clear_message_for_a_missing_labels_file(
    dicom_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train", "classifier",
                "--archive", str(dicom_archive / TARGET),
                "--labels", str(tmp_path / "labels.parquet"),
                "--out", str(tmp_path / "out"), "--no-progress",
            ]
        )  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harmonize: error: cannot read the labels table")
    assert "labels.parquet that `harmonize synth` writes" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
