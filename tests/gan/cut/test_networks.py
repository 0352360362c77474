"""CUT's networks: the encoder numbering ``nce_layers`` uses (against the generator's own modules,
read with forward hooks), the generator read out at those layers, the patch heads and the patch
positions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harmonize.errors import ModelError
from harmonize.gan.cut.config import LAYERS_BEFORE_BLOCKS, CUTConfig
from harmonize.gan.cut.networks import (
    CUTGenerators,
    PatchSampleF,
    build_discriminators,
    encoder_channels,
    encoder_layers,
    encoder_stride,
    run_generator,
    sample_patch_ids,
)
from harmonize.gan.layers import ResnetGenerator, init_normal


def _generator(ngf: int = 4, n_blocks: int = 3) -> ResnetGenerator:
    return init_normal(ResnetGenerator(ngf, n_blocks), std=0.2, seed=0)


def _hooked_outputs(generator: ResnetGenerator, x: torch.Tensor) -> list[torch.Tensor]:
    """Every encoder layer's output in a plain forward (index 0: the input), copied when made."""
    outputs = [x]
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out: outputs.append(out.clone()))
        for layer in encoder_layers(generator)
    ]
    try:
        generator(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def test_the_numbering_is_the_generators_own_layers_in_order() -> None:
    generator = _generator()
    layers = encoder_layers(generator)
    assert len(layers) == LAYERS_BEFORE_BLOCKS + 3
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == 3 * ["Conv2d", "InstanceNorm2d", "ReLU"] + 3 * ["ResidualBlock"]
    assert layers[0] is generator.stem[0] and layers[-1] is generator.blocks[-1]
    x = torch.randn(2, 1, 16, 24)
    for index, out in enumerate(_hooked_outputs(generator, x)):
        stride = encoder_stride(index)
        assert out.shape == (2, encoder_channels(index, 4), 16 // stride, 24 // stride), index


def test_run_generator_gives_the_generators_output_and_its_encoder_layers() -> None:
    generator = _generator()
    x = torch.randn(2, 1, 16, 16)
    layers = (0, 2, 4, 9, 10, 12)
    with torch.no_grad():
        out, features = run_generator(generator, x, layers)
        expected = generator(x)
        hooked = _hooked_outputs(generator, x)
        encoded, shallow = run_generator(generator, x, (1, 2), decode=False)
    assert out is not None and torch.equal(out, expected)
    assert len(features) == len(layers)
    for index, feature in zip(layers, features, strict=True):
        assert torch.equal(feature, hooked[index]), index
    assert (features[1] < 0).any()  # the norm output, kept before its in-place ReLU
    assert encoded is None and len(shallow) == 2
    assert all(torch.equal(f, hooked[i]) for i, f in zip((1, 2), shallow, strict=True))
    with pytest.raises(ModelError, match="divisible by 4"):
        run_generator(generator, torch.zeros(1, 1, 18, 16), layers)


def test_patch_heads_project_the_chosen_positions_to_unit_vectors() -> None:
    torch.manual_seed(0)
    head = PatchSampleF([3, 5], width=8)
    features = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    ids = [torch.tensor([[0, 5, 15], [1, 2, 3]]), torch.tensor([[3, 0, 1], [3, 0, 1]])]
    out = head(features, ids)
    assert [o.shape for o in out] == [(2, 3, 8), (2, 3, 8)] and out[0].dtype == torch.float32
    assert torch.allclose(out[0].norm(dim=-1), torch.ones(2, 3))
    picked = features[1].flatten(2)[1, :, 3]  # layer 1, image 1, its first chosen position
    direction = nn.functional.normalize(head.mlps[1](picked[None]), dim=-1)[0]
    assert torch.allclose(out[1][1, 0], direction, atol=1e-6)


def test_patch_positions_are_distinct_shared_by_a_group_and_reproducible() -> None:
    layers = (0, 4, 10)
    ids = sample_patch_ids(layers, (16, 8), 40, (2, 1), torch.Generator().manual_seed(3))
    # 128 positions at full size, 32 at 1/2, 8 at 1/4: all of the smaller maps.
    assert [tuple(i.shape) for i in ids] == [(3, 40), (3, 32), (3, 8)]
    for layer_ids, positions in zip(ids, (128, 32, 8), strict=True):
        assert torch.equal(layer_ids[0], layer_ids[1])  # one draw per group
        assert len(set(layer_ids[0].tolist())) == layer_ids.shape[1]
        assert int(layer_ids.min()) >= 0 and int(layer_ids.max()) < positions
    assert not torch.equal(ids[0][0], ids[0][2])
    again = sample_patch_ids(layers, (16, 8), 40, (2, 1), torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(ids, again, strict=True))
    first_group = sample_patch_ids(layers, (16, 8), 40, (2,), torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b[:2]) for a, b in zip(first_group, ids, strict=True))


def test_the_heads_are_built_from_the_layers_channels_and_there_is_one_discriminator() -> None:
    config = CUTConfig(ngf=4, n_blocks=2, nce_layers=(0, 3, 4, 8, 11), netf_nc=16)
    generators = CUTGenerators(config)
    widths = [mlp[0].in_features for mlp in generators.f.mlps]
    assert widths == [1, 4, 8, 16, 16] and generators.f.mlps[0][2].out_features == 16
    pair = build_discriminators(8, 2)
    assert pair.d_a is None and not any(n.startswith("d_a") for n in pair.state_dict())
    scores_a, scores_b = pair(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    assert scores_a is None and scores_b.shape[:2] == (1, 1)
