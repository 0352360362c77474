"""Neural harmonizers at inference: a saved generator loaded back, direct (tiled), curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harmonize.errors import ConfigError, ModelError
from harmonize.methods.neural import NeuralHarmonizer, apply_tiled, tile_starts
from harmonize.models.files import load_weights, read_model, write_model
from harmonize.models.registry import create_harmonizer


class _TinyGenerator(nn.Module):
    """A real (small) fully convolutional generator: 1 channel in, tanh out."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x + 0.1 * self.body(x))


class _Negative(nn.Module):
    """A generator that learnt the negative of its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


@pytest.fixture()
def saved_model(tmp_path) -> tuple[str, nn.Module]:
    torch.manual_seed(0)
    generator = _TinyGenerator(4)
    write_model(
        str(tmp_path / "m"),
        method="tiny",
        state={"model_config": {"width": 4, "load_size": 32}},
        weights=generator.state_dict(),
        card={"note": "t"},
    )
    return str(tmp_path / "m"), generator


def _load(uri: str) -> NeuralHarmonizer:
    """What the registry does for a GAN method, with the test's own generator class."""
    saved = read_model(uri)
    generator = load_weights(_TinyGenerator(int(saved.model_config["width"])), saved)
    return NeuralHarmonizer("tiny", saved.model_config, generator)


def test_save_load_round_trip_gives_the_same_generator(saved_model) -> None:
    uri, generator = saved_model
    model = _load(uri)
    image = np.random.default_rng(0).random((37, 50), dtype=np.float32)  # not a multiple of 4
    out = model.set_mode("direct").transform(image)
    with torch.inference_mode():
        x = torch.from_numpy(image)[None, None] * 2 - 1
        padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")
        ref = ((generator(padded)[..., :37, :50] + 1) / 2).clamp(0, 1)[0, 0].numpy()
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_tampered_weights_are_refused(saved_model) -> None:
    from pathlib import Path

    uri, _ = saved_model
    weights = Path(uri) / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        _load(uri)


def test_tiles_cover_the_image_and_blend_exactly_for_pointwise_maps() -> None:
    assert tile_starts(100, 100, 8) == [0]
    starts = tile_starts(1000, 256, 32)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 32 for a, b in zip(starts, starts[1:], strict=False))
    x = torch.rand(1, 1, 300, 517)
    out = apply_tiled(lambda t: torch.sigmoid(3 * t), x, tile=128, overlap=16)
    torch.testing.assert_close(out, torch.sigmoid(3 * x))


def test_tiled_conv_is_close_to_the_whole_image() -> None:
    torch.manual_seed(1)
    gen = _TinyGenerator(4).eval()
    x = torch.rand(1, 1, 200, 260)
    with torch.inference_mode():
        whole = gen(x)
        tiled = apply_tiled(gen, x, tile=96, overlap=24)
    assert (tiled - whole).abs().max() < 0.05  # seams only where a ramp meets a tile border
    assert (tiled - whole).abs().mean() < 1e-3


def test_curve_mode_keeps_pixel_order_and_matches_its_curve(saved_model) -> None:
    uri, _ = saved_model
    model = _load(uri).set_mode("curve")
    image = np.random.default_rng(2).random((130, 97), dtype=np.float32)
    out = model.transform(image)
    order = np.argsort(image, axis=None)
    assert np.all(np.diff(out.ravel()[order]) >= 0)  # monotone: no structure can be invented
    assert out.shape == image.shape


def test_curve_mode_refuses_a_generator_that_makes_negatives() -> None:
    image = np.random.default_rng(3).random((40, 36), dtype=np.float32)
    negative = NeuralHarmonizer("tiny", {"width": 1, "load_size": 32}, _Negative())
    negative.set_mode("curve")
    with pytest.raises(ModelError, match=r"negative \(pixel correlation -1.00"):
        negative.transform(image)
    direct = negative.set_mode("direct").transform(image)  # direct mode shows what it learnt
    np.testing.assert_allclose(direct, 1.0 - image, atol=1e-6)


def test_modes_are_checked_and_neural_models_are_not_fitted(saved_model) -> None:
    model = _load(saved_model[0])
    with pytest.raises(ConfigError, match="no mode"):
        model.set_mode("sideways")
    with pytest.raises(ConfigError, match="trained, not fitted"):
        create_harmonizer("cyclegan")
