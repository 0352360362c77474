"""UNIT and CUT through the training loop and back through load_model: exact resume after a
crash (the method's own random stream included: UNIT's latent noise, CUT's patch positions),
and the saved generator at inference (direct and curve modes). Each test runs once per method
of ``METHODS``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from harmonize.errors import ModelError
from harmonize.gan.cut import recipe as cut_recipe
from harmonize.gan.unit import recipe as unit_recipe
from harmonize.io.storage import Storage
from harmonize.models.registry import gan_parts, load_model
from harmonize.training.checkpoint import checkpoint_uri, latest_checkpoint, load_checkpoint
from harmonize.training.config import TrainConfig
from harmonize.training.data import TrainingData
from harmonize.training.gan import train

from training_samples import Crash, crash_at, logged

Weights = dict[str, torch.Tensor]


def _matching_keys(weights: Weights, generator: nn.Module) -> Weights:
    """The checkpoint's generator weights whose names the inference network has (UNIT: its
    translator is a view on the encoder and decoder it shares names with)."""
    return {k: v for k, v in weights.items() if k in generator.state_dict()}


def _under_g_ab(weights: Weights, generator: nn.Module) -> Weights:
    """The weights of the checkpoint's ``g_ab`` (CUT: the generators also hold the heads F)."""
    del generator
    return {k.removeprefix("g_ab."): v for k, v in weights.items() if k.startswith("g_ab.")}


@dataclass(frozen=True)
class Method:
    """What the tests need to know of one method."""

    model: dict[str, Any]  # its tiny model settings
    loss_names: tuple[str, ...]  # every loss term it logs
    random_state: str  # the checkpoint's entry of its own random stream
    inference_weights: Callable[[Weights, nn.Module], Weights]  # from the saved "generators"
    absent_losses: tuple[str, ...] = ()  # terms it never logs
    saved_prefixes: tuple[str, ...] = ()  # parts of "generators" beyond the translation


METHODS = {
    "unit": Method(
        model={"ngf": 8, "ndf": 8, "n_blocks": 2, "n_shared_blocks": 1, "n_layers_d": 2},
        loss_names=unit_recipe.LOSS_NAMES,
        random_state="noise",
        inference_weights=_matching_keys,
    ),
    "cut": Method(
        model={"ngf": 8, "ndf": 8, "n_blocks": 2, "nce_layers": [0, 4, 7, 11], "num_patches": 32},
        loss_names=cut_recipe.LOSS_NAMES,
        random_state="patches",
        inference_weights=_under_g_ab,
        absent_losses=("d_a",),  # one-sided
        saved_prefixes=("f.mlps.",),  # the patch heads
    ),
}


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


@pytest.fixture(scope="module", params=list(METHODS))
def method(request: pytest.FixtureRequest) -> str:
    return request.param


def _config(method: str, **overrides) -> TrainConfig:
    values = {
        "method": method,
        "steps": 6,
        "crop_size": 32,
        "load_size": 40,
        "log_every": 1,
        "checkpoint_every": 3,
        "model": METHODS[method].model,
        "validation_images": 2,
    }
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data: TrainingData, method: str) -> Path:
    out = tmp_path_factory.mktemp(method) / "straight"
    train(_config(method), data, str(out), progress=False)
    return out


def test_resume_after_a_crash_continues_exactly(tmp_path, data, method, trained) -> None:
    spec = METHODS[method]
    crashed = str(tmp_path / "crashed")
    with pytest.raises(Crash):
        train(_config(method), data, crashed, report=crash_at(5), progress=False)
    assert latest_checkpoint(crashed) == checkpoint_uri(crashed, 3)
    result = train(_config(method), data, crashed, progress=False)  # a new recipe, from step 3
    assert result.start_step == 3
    assert [m["step"] for m in logged(crashed)] == [1, 2, 3, 4, 5, 6]
    assert set(spec.loss_names) <= set(logged(crashed)[0])
    for name in spec.absent_losses:
        assert name not in logged(crashed)[0]
    assert logged(crashed) == logged(trained)  # the same next-step losses, bit for bit
    ours = load_checkpoint(checkpoint_uri(crashed, 6), Storage())["recipe"]
    theirs = load_checkpoint(checkpoint_uri(str(trained), 6), Storage())["recipe"]
    for part in ("generators", "discriminators"):
        assert ours[part].keys() == theirs[part].keys()
        for name, value in ours[part].items():
            assert torch.equal(value, theirs[part][name]), name
    for prefix in spec.saved_prefixes:
        assert any(name.startswith(prefix) for name in ours["generators"]), prefix
    assert torch.equal(ours[spec.random_state], theirs[spec.random_state])


@pytest.mark.parametrize("mode", ["direct", "curve"])
def test_saved_model_loads_and_transforms_deterministically(
    trained: Path, method: str, mode: str
) -> None:
    loaded = load_model(str(trained), Storage(), method, mode)
    assert loaded.card["method"] == method and loaded.card["validation"]["n_images"] == 2
    harmonizer = loaded.harmonizer
    image = np.random.default_rng(2).random((37, 50), dtype=np.float32)  # not a multiple of 4
    out = harmonizer.transform(image)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(harmonizer.transform(image), out)  # no sampling
    if mode == "direct":  # equals the checkpoint's generator on the reflect-padded image
        generator = gan_parts(method).build_generator(loaded.harmonizer.model_config)
        state = load_checkpoint(checkpoint_uri(str(trained), 6), Storage())["recipe"]
        generator.load_state_dict(METHODS[method].inference_weights(state["generators"], generator))
        with torch.inference_mode():
            x = torch.from_numpy(image)[None, None] * 2 - 1
            padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")
            ref = ((generator(padded)[..., :37, :50] + 1) / 2).clamp(0, 1)[0, 0].numpy()
        np.testing.assert_allclose(out, ref, atol=1e-6)
    else:  # a monotone curve: pixel order is kept
        order = np.argsort(image, axis=None)
        assert np.all(np.diff(out.ravel()[order]) >= 0)
    with pytest.raises(ModelError, match=f"holds a {method} model"):
        load_model(str(trained), Storage(), "cyclegan", mode)
