"""CUT through the training loop and back through load_model: exact resume after a crash (the
patch stream included), and the saved generator at inference (direct and curve modes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harmonize.errors import ModelError
from harmonize.gan.cut.recipe import LOSS_NAMES
from harmonize.io.storage import Storage
from harmonize.models.registry import gan_parts, load_model
from harmonize.training.checkpoint import checkpoint_uri, latest_checkpoint, load_checkpoint
from harmonize.training.config import TrainConfig
from harmonize.training.data import TrainingData
from harmonize.training.gan import train

from training_samples import Crash, crash_at, logged

TINY = {"ngf": 8, "ndf": 8, "n_blocks": 2, "nce_layers": [0, 4, 7, 11], "num_patches": 32}


def _smooth_levels(rng: np.random.Generator, shape: tuple[int, int], lo: int, hi: int):
    noise = torch.from_numpy(rng.random((1, 1, shape[0] + 8, shape[1] + 8)))
    smooth = torch.nn.functional.avg_pool2d(noise, 9, 1)[0, 0].numpy()
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (lo + (hi - lo) * smooth).astype(np.uint16)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    rng = np.random.default_rng(0)
    source = [_smooth_levels(rng, (40, 48), 2000, 30000) for _ in range(3)]
    target = [_smooth_levels(rng, (44, 40), 20000, 60000) for _ in range(3)]
    return TrainingData(source, target, load_size=40, source_uri="a", target_uri="b")


def _config(**overrides) -> TrainConfig:
    values = {
        "method": "cut",
        "steps": 6,
        "crop_size": 32,
        "load_size": 40,
        "log_every": 1,
        "checkpoint_every": 3,
        "model": TINY,
        "validation_images": 2,
    }
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data: TrainingData) -> Path:
    out = tmp_path_factory.mktemp("cut") / "straight"
    train(_config(), data, str(out), progress=False)
    return out


def test_resume_after_a_crash_continues_exactly(tmp_path, data, trained) -> None:
    crashed = str(tmp_path / "crashed")
    with pytest.raises(Crash):
        train(_config(), data, crashed, report=crash_at(5), progress=False)
    assert latest_checkpoint(crashed) == checkpoint_uri(crashed, 3)
    result = train(_config(), data, crashed, progress=False)  # a new recipe, resumed at step 3
    assert result.start_step == 3
    assert [m["step"] for m in logged(crashed)] == [1, 2, 3, 4, 5, 6]
    assert set(LOSS_NAMES) <= set(logged(crashed)[0]) and "d_a" not in logged(crashed)[0]
    assert logged(crashed) == logged(trained)  # the same next-step losses, bit for bit
    ours = load_checkpoint(checkpoint_uri(crashed, 6), Storage())["recipe"]
    theirs = load_checkpoint(checkpoint_uri(str(trained), 6), Storage())["recipe"]
    for part in ("generators", "discriminators"):
        assert ours[part].keys() == theirs[part].keys()
        for name, value in ours[part].items():
            assert torch.equal(value, theirs[part][name]), name
    assert any(name.startswith("f.mlps.") for name in ours["generators"])  # the heads are saved
    assert torch.equal(ours["patches"], theirs["patches"])


@pytest.mark.parametrize("mode", ["direct", "curve"])
def test_saved_model_loads_and_transforms_deterministically(trained: Path, mode: str) -> None:
    loaded = load_model(str(trained), Storage(), "cut", mode)
    assert loaded.card["method"] == "cut" and loaded.card["validation"]["n_images"] == 2
    harmonizer = loaded.harmonizer
    image = np.random.default_rng(2).random((37, 50), dtype=np.float32)  # not a multiple of 4
    out = harmonizer.transform(image)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(harmonizer.transform(image), out)
    if mode == "direct":  # equals the checkpoint's generator on the reflect-padded image
        generator = gan_parts("cut").build_generator(loaded.harmonizer.model_config)
        state = load_checkpoint(checkpoint_uri(str(trained), 6), Storage())["recipe"]
        weights = state["generators"]
        generator.load_state_dict(
            {k.removeprefix("g_ab."): v for k, v in weights.items() if k.startswith("g_ab.")}
        )
        with torch.inference_mode():
            x = torch.from_numpy(image)[None, None] * 2 - 1
            padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")
            ref = ((generator(padded)[..., :37, :50] + 1) / 2).clamp(0, 1)[0, 0].numpy()
        np.testing.assert_allclose(out, ref, atol=1e-6)
    else:  # a monotone curve: pixel order is kept
        order = np.argsort(image, axis=None)
        assert np.all(np.diff(out.ravel()[order]) >= 0)
    with pytest.raises(ModelError, match="holds a cut model"):
        load_model(str(trained), Storage(), "cyclegan", mode)
