"""The classifier's data: labels joined by SOPInstanceUID whatever the table order, bad label
inputs said plainly, the stable stratified hash split, geometric-only augmentation, and sharded
data equal to the in-memory one (with its index's round trip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harmonize.classifier.config import Augmentation
from harmonize.classifier.data import (
    ClassifierData,
    ids_digest,
    prepare_classifier_data,
    prepare_classifier_shards,
    sample_batch,
    split_by_image_id,
)
from harmonize.classifier.preprocess import classifier_levels, levels_to_model
from harmonize.errors import ConfigError
from harmonize.training.sharded_images import ImageRows

from conftest import TARGET
from training_samples import SIZE, blob_data


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
    assert ids_digest(ids) == ids_digest(toy.image_ids)  # a set's hash: order does not matter
    with pytest.raises(ConfigError, match="at least 2 of each class"):
        split_by_image_id(["a", "b", "c"], np.array([0, 0, 1]), 0.2)


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


def test_sharded_data_holds_what_memory_holds_and_round_trips_its_index(
    dicom_archive: Path, tmp_path: Path
) -> None:
    archive, table = str(dicom_archive / TARGET), str(dicom_archive / "labels-7.parquet")
    memory = prepare_classifier_data(archive, table, 32, progress=False)
    sharded = prepare_classifier_shards(
        archive, table, 32, cache_uri=str(tmp_path / "shards"), progress=False, shard_size=1
    )  # one object a shard: the unreadable one's shard holds no image, its error still counts
    assert isinstance(sharded.images, ImageRows) and sharded.images.shape == (7, 32, 32)
    assert (sharded.image_ids, sharded.skipped) == (memory.image_ids, memory.skipped)
    np.testing.assert_array_equal(sharded.labels, memory.labels)
    np.testing.assert_array_equal(sharded.images[np.arange(7)], memory.images)
    np.testing.assert_array_equal(sharded.images[2:5], memory.images[2:5])
    for ours, theirs in zip(
        sample_batch(sharded, np.arange(7), np.random.default_rng(1), 5, Augmentation()),
        sample_batch(memory, np.arange(7), np.random.default_rng(1), 5, Augmentation()),
        strict=True,
    ):
        assert torch.equal(ours, theirs)
    uri = str(tmp_path / "cache" / "classifier-data.json")
    sharded.save(uri)
    loaded = ClassifierData.load(uri)
    np.testing.assert_array_equal(loaded.images[np.arange(7)], memory.images)
    np.testing.assert_array_equal(loaded.labels, memory.labels)
    assert (loaded.image_ids, loaded.input_size, loaded.skipped) == (
        memory.image_ids,
        32,
        memory.skipped,
    )
    assert (loaded.archive_uri, loaded.labels_uri) == (archive, table)
    with pytest.raises(ConfigError, match="only sharded classifier data is saved"):
        memory.save(str(tmp_path / "memory.json"))
    (tmp_path / "junk.json").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a harmonize classifier-data index"):
        ClassifierData.load(str(tmp_path / "junk.json"))
    with pytest.raises(ConfigError, match="must be 48 x 48"):  # shards of another input size
        ImageRows(loaded.images.images, [0], 48)  # type: ignore[union-attr]
