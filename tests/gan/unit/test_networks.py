"""UNIT's networks: one set of shared weights for both domains (and one gradient from both),
and the translator kept for inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harmonize.errors import ModelError
from harmonize.gan.layers import count_parameters


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def test_shared_blocks_are_one_set_of_parameters_for_both_domains(tiny_recipe, toy_batch) -> None:
    gens = tiny_recipe("unit").generators
    ids = {name: {id(p) for p in m.parameters()} for name, m in gens.named_children()}
    for kind in ("encoder", "decoder"):
        path_a = {id(p) for p in getattr(gens, kind)("a").parameters()}
        path_b = {id(p) for p in getattr(gens, kind)("b").parameters()}
        shared = ids["enc_shared" if kind == "encoder" else "dec_shared"]
        assert shared and path_a & path_b == shared  # the very same tensors on both paths
    # Counted once: ngf 8 -> latent 32 channels; a residual block is two 3x3 convs.
    block = 2 * _conv(32, 32, 3)
    encoder = _conv(1, 8, 7) + _conv(8, 16, 4) + _conv(16, 32, 4) + block  # one private block
    decoder = block + _conv(32, 16, 5) + _conv(16, 8, 5) + _conv(8, 1, 7)
    assert count_parameters(gens) == 2 * encoder + 2 * decoder + 2 * block
    assert len(gens.state_dict()) == len(list(gens.parameters()))  # no duplicated keys

    # One gradient, accumulated from both domains.
    real_a, real_b = toy_batch(0)
    shared_weight = gens.enc_shared[0].body[0][0].weight

    def grad_of(*domains: str) -> torch.Tensor:
        gens.zero_grad(set_to_none=True)
        loss = sum(gens.encoder(d)(real_a if d == "a" else real_b).square().mean() for d in domains)
        loss.backward()
        return shared_weight.grad.clone()

    from_a, from_b, both = grad_of("a"), grad_of("b"), grad_of("a", "b")
    assert from_a.abs().sum() > 0 and from_b.abs().sum() > 0
    assert not torch.allclose(from_a, from_b)
    torch.testing.assert_close(both, from_a + from_b)


def test_translator_is_deterministic_fully_convolutional_and_in_range(tiny_recipe) -> None:
    recipe = tiny_recipe("unit")
    translator = recipe.generators.translator()
    shared = {id(p) for p in recipe.generators.parameters()}
    assert {id(p) for p in translator.parameters()} <= shared  # a view, not a copy
    x = torch.randn(2, 1, 32, 48) * 50
    with torch.no_grad():
        y = translator(x)
        assert torch.equal(translator(x), y)  # the latent mean: no sampling at inference
        gens = recipe.generators
        assert torch.equal(y, gens.decoder("b")(gens.encoder("a")(x)))  # A's encoder, B's decoder
    assert y.shape == x.shape and y.abs().max() <= 1.0
    with pytest.raises(ModelError, match="pad_to_multiple"):
        translator(torch.zeros(1, 1, 30, 32))
    convs = [m for m in translator.modules() if isinstance(m, nn.Conv2d) and m.padding != (0, 0)]
    assert convs and all(m.padding_mode == "reflect" for m in convs)
