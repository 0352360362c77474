"""Training data: both sites decoded and resized once (unreadable objects counted), one
pickle-free .npz round trip, and unpaired crops sampled in model range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harmonize.errors import ConfigError
from harmonize.imaging.preprocess import to_uint16
from harmonize.io.storage import Storage
from harmonize.training.data import TrainingData, prepare_training_data

from conftest import SOURCE, TARGET


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
