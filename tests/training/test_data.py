"""Training data: both sites decoded and resized once (unreadable objects counted), in memory or
into shards that hold the same images and draw the same batches, the index round trip, the
content-keyed cache (reused unchanged, one shard rebuilt for one changed object), and unpaired
crops sampled in model range."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from harmonize.errors import ConfigError
from harmonize.imaging.preprocess import to_uint16
from harmonize.io.storage import Storage
from harmonize.training.data import TrainingData, prepare_training_data, prepare_training_shards
from harmonize.training.job import cache_key, cached_data, gan_job
from harmonize.training.sharded_images import ShardedImages
from harmonize.training.validate import site_histogram

from conftest import SOURCE, TARGET
from training_samples import gan_config


def _levels_data(rng: np.random.Generator) -> TrainingData:
    """Source levels all below 30000, target levels all above 40000, mixed image shapes."""
    source = [rng.integers(0, 30000, (40, 52), dtype=np.uint16) for _ in range(3)]
    target = [rng.integers(40000, 65536, (44, 40), dtype=np.uint16) for _ in range(2)]
    return TrainingData(source, target, load_size=40, source_uri="a", target_uri="b")


def _contains(image: np.ndarray, window: np.ndarray) -> bool:
    size = window.shape[0]
    for top in range(image.shape[0] - size + 1):
        for left in range(image.shape[1] - size + 1):
            if np.array_equal(image[top : top + size, left : left + size], window):
                return True
    return False


def test_prepare_decodes_and_resizes_both_sites_and_counts_unreadable(data) -> None:
    assert len(data.source) == 4 and len(data.target) == 4
    assert data.unreadable == {"source": 1, "target": 0}
    for image in data.source + data.target:
        assert image.dtype == np.uint16 and min(image.shape) == 48
    assert data.source_uri.endswith(SOURCE) and data.target_uri.endswith(TARGET)
    limited = prepare_training_data(data.source_uri, data.target_uri, 48, limit=2, progress=False)
    assert len(limited.source) == 2 and len(limited.target) == 2


def _sharded(archive: Path, cache: Path) -> TrainingData:
    return prepare_training_shards(
        str(archive / SOURCE), str(archive / TARGET), 48, cache_uri=str(cache), progress=False
    )


def test_sharded_data_holds_what_memory_holds_and_draws_the_same_batches(
    tmp_path, tiny_archive, data, caplog
) -> None:
    sharded = _sharded(tiny_archive, tmp_path / "shards")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "skipped 1 unreadable source objects" in warning and "broken.dcm" in warning
    assert isinstance(sharded.source, ShardedImages) and isinstance(sharded.target, ShardedImages)
    assert sharded.unreadable == data.unreadable == {"source": 1, "target": 0}
    for ours, theirs in ((sharded.source, data.source), (sharded.target, data.target)):
        assert len(ours) == len(theirs)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    np.testing.assert_allclose(site_histogram(sharded.target), site_histogram(data.target))
    for ours, theirs in zip(
        sharded.sample(np.random.default_rng(3), 2, 32, flip=True),
        data.sample(np.random.default_rng(3), 2, 32, flip=True),
        strict=True,
    ):
        assert torch.equal(ours, theirs)
    uri = str(tmp_path / "cache" / "index.json")
    sharded.save(uri)
    loaded = TrainingData.load(uri, Storage())
    assert loaded.source.shard_uris == sharded.source.shard_uris  # type: ignore[attr-defined]
    assert (loaded.load_size, loaded.unreadable) == (data.load_size, data.unreadable)
    assert (loaded.source_uri, loaded.target_uri) == (data.source_uri, data.target_uri)
    assert np.array_equal(loaded.target[-1], data.target[-1])
    with pytest.raises(ConfigError, match="only sharded training data is saved"):
        data.save(str(tmp_path / "memory.json"))
    (tmp_path / "junk.json").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a harmonize training-data index"):
        TrainingData.load(str(tmp_path / "junk.json"))


def test_the_cache_is_reused_unchanged_and_rebuilds_only_a_changed_shard(
    tmp_path, tiny_archive
) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(tiny_archive, archive)
    job = gan_job(
        gan_config(load_size=48, crop_size=32), str(archive / SOURCE), str(archive / TARGET)
    )
    storage, out = Storage(), str(tmp_path / "out")
    first_uri, cached, first = cached_data(job, cache_key(job, storage), out, storage, False)
    assert not cached and first_uri.endswith(".json")
    shards = tmp_path / "out" / "cache" / "training-data"
    before = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    assert len(before) == 2  # a source and a target shard (256 images each at most)
    again_uri, cached, _ = cached_data(job, cache_key(job, storage), out, storage, False)
    assert (again_uri, cached) == (first_uri, True)
    assert {p.name: p.stat().st_mtime_ns for p in shards.iterdir()} == before

    changed = sorted((archive / TARGET).glob("*.dcm"))[0]  # one target object rewritten
    ds = pydicom.dcmread(changed)
    ds.decompress()
    ds.PixelData = bytes(len(ds.PixelData))  # an all-black image
    ds.save_as(changed)
    uri, cached, data = cached_data(job, cache_key(job, storage), out, storage, False)
    assert uri != first_uri and not cached
    after = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    kept = {name for name in before if name.startswith("source-")}
    assert {name: after[name] for name in kept} == {name: before[name] for name in kept}
    assert len(set(after) - set(before)) == 1  # the target shard, rebuilt under a new key
    assert data.target[0].max() == 0 and first.target[0].max() > 0


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
