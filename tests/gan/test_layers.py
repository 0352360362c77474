"""The shared network pieces against the published CycleGAN architecture (parameter counts, the
PatchGAN's receptive field), the generator's size and range, and the seeded weight inits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harmonize.errors import ModelError
from harmonize.gan.layers import (
    PatchDiscriminator,
    ResnetGenerator,
    count_parameters,
    init_kaiming,
    init_normal,
)


def _conv(c_in: int, c_out: int, k: int) -> int:
    """Parameters of a k x k convolution with bias."""
    return c_in * c_out * k * k + c_out


def _resnet_generator_parameters(ngf: int, n_blocks: int, channels: int = 1) -> int:
    """c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf (two 3x3 convs), u2ngf, ungf, c7s1-channels."""
    return (
        _conv(channels, ngf, 7)
        + _conv(ngf, 2 * ngf, 3)
        + _conv(2 * ngf, 4 * ngf, 3)
        + n_blocks * 2 * _conv(4 * ngf, 4 * ngf, 3)
        + _conv(4 * ngf, 2 * ngf, 3)  # a transposed conv has the same count
        + _conv(2 * ngf, ngf, 3)
        + _conv(ngf, channels, 7)
    )


def _patchgan_parameters(ndf: int, n_layers: int, channels: int = 1) -> int:
    """4x4 convs: channels -> ndf -> ndf * min(2^i, 8) for i = 1..n_layers -> 1 (norms: none)."""
    widths = [channels, ndf, *(ndf * min(2**i, 8) for i in range(1, n_layers + 1)), 1]
    return sum(_conv(a, b, 4) for a, b in zip(widths, widths[1:], strict=False))


def test_parameter_counts_match_the_published_architecture() -> None:
    generator, discriminator = ResnetGenerator(), PatchDiscriminator()
    assert count_parameters(generator) == _resnet_generator_parameters(64, 9)
    assert count_parameters(discriminator) == _patchgan_parameters(64, 3)
    assert round(count_parameters(generator) / 1e6, 1) == 11.4
    assert round(count_parameters(discriminator) / 1e6, 2) == 2.76
    assert count_parameters(ResnetGenerator(8, 2)) == _resnet_generator_parameters(8, 2)


def test_generator_keeps_the_size_and_the_model_range() -> None:
    generator = init_normal(ResnetGenerator(8, 2))
    x = torch.randn(2, 1, 32, 48) * 50  # far outside [-1, 1]: tanh still bounds the output
    with torch.no_grad():
        y = generator(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0
    with pytest.raises(ModelError, match="pad_to_multiple"):
        generator(torch.zeros(1, 1, 30, 32))


def test_residual_generator_is_the_identity_when_its_last_layer_is_zero() -> None:
    generator = init_normal(ResnetGenerator(8, 2, residual=True))
    assert count_parameters(generator) == _resnet_generator_parameters(8, 2)
    x = torch.rand(2, 1, 32, 48) * 2 - 1
    x[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, -1.0, 1.0])  # the range's ends stay finite
    head = generator.head[0]
    assert isinstance(head, nn.Conv2d)
    with torch.no_grad():
        changed = generator(x)
        head.weight.zero_()
        head.bias.zero_()
        same = generator(x)
    margin = ResnetGenerator.RESIDUAL_MARGIN
    assert torch.allclose(same, x * (1 - margin), atol=1e-5)
    assert changed.abs().max() < 1.0 and not torch.allclose(changed, same)


def _without_norms(module: nn.Module) -> nn.Module:
    """The conv stack alone: instance norm couples every pixel, hiding the receptive field."""
    for name, child in module.named_children():
        if isinstance(child, nn.InstanceNorm2d):
            setattr(module, name, nn.Identity())
        else:
            _without_norms(child)
    return module


def test_patchgan_gives_30x30_scores_on_256_and_sees_70x70_patches() -> None:
    discriminator = init_normal(PatchDiscriminator(ndf=8))
    with torch.no_grad():
        assert discriminator(torch.zeros(1, 1, 256, 256)).shape == (1, 1, 30, 30)
    stack = _without_norms(discriminator)
    x = torch.randn(1, 1, 256, 256, requires_grad=True)
    stack(x)[0, 0, 15, 15].backward()
    assert x.grad is not None
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(dim=0)).flatten()
    assert int(rows[-1] - rows[0]) + 1 == 70
    assert int(cols[-1] - cols[0]) + 1 == 70


def test_init_normal_is_normal_0_02_with_zero_biases() -> None:
    generator = init_normal(ResnetGenerator(), seed=3)
    weights = torch.cat(
        [m.weight.detach().flatten() for m in generator.modules() if isinstance(m, nn.Conv2d)]
    )
    assert abs(float(weights.std()) - 0.02) < 0.0002
    assert abs(float(weights.mean())) < 0.0002
    for m in generator.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            assert m.bias is not None and torch.count_nonzero(m.bias) == 0


def test_init_kaiming_is_he_normal_per_layer_with_zero_biases() -> None:
    discriminator = init_kaiming(PatchDiscriminator(), seed=3)
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[1:]:  # 8192+ weights each (seeded): the sample std is within 2 %
        fan_in = conv.weight[0].numel()
        assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
        assert conv.bias is not None and torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize("init", [init_normal, init_kaiming])
def test_inits_are_seeded_and_leave_the_global_rng_alone(init) -> None:
    first = ResnetGenerator()  # built first: its default init draws from the global RNG
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    init(first, seed=3)
    assert torch.equal(torch.rand(1), expected)  # the global RNG did not move
    same, other = init(ResnetGenerator(), seed=3), init(ResnetGenerator(), seed=4)
    for name, value in first.state_dict().items():
        assert torch.equal(value, same.state_dict()[name]), name
    assert not torch.equal(first.stem[0].weight, other.stem[0].weight)
