"""Network pieces of the image-to-image GANs: conv blocks, the ResNet generator and PatchGAN
discriminator, the discriminator pair, seeded weight init and parameter helpers.

The networks follow Zhu et al. 2017 (CycleGAN, appendix 7.2) and its reference implementation,
for one-channel radiographs: the ResNet generator ``c7s1-64, d128, d256, R256 x n, u128, u64,
c7s1-1`` with instance norm and reflect padding, and the 70x70 PatchGAN discriminator
``C64-C128-C256-C512`` (no norm on the first layer, leaky ReLU 0.2).

Example::

    generator = init_normal(ResnetGenerator(ngf=64, n_blocks=9), seed=0)
    fake = generator(real)                 # (N, 1, H, W) in [-1, 1] -> same shape, H, W % 4 == 0
    patch_scores = PatchDiscriminator()(fake)   # (N, 1, 30, 30) for 256 x 256 input
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from harmonize.errors import ModelError

Activation = Literal["relu", "leaky_relu", "tanh", "none"]
PaddingMode = Literal["zeros", "reflect"]
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def activation_layer(name: Activation) -> nn.Module:
    """The activation layer ``name``: ReLU, leaky ReLU (slope 0.2), tanh or none (identity)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "tanh":
        return nn.Tanh()
    return nn.Identity()


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """Instance norm as in CycleGAN: per image and channel, no affine, no running statistics
    (so training and inference normalise the same way and there are no buffers to sync)."""
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ConvBlock(nn.Sequential):
    """Convolution (or transposed convolution) -> optional instance norm -> activation.

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as in ``nn.Conv2d``.
        padding_mode: ``reflect`` or ``zeros`` (ignored by transposed convolutions).
        norm: add instance norm after the convolution.
        activation: ``relu``, ``leaky_relu`` (slope 0.2), ``tanh`` or ``none``.
        transposed: a ``ConvTranspose2d`` upsampling by ``stride`` (with ``output_padding =
            stride - 1``, so the output is exactly ``stride`` times larger).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        padding_mode: PaddingMode = "zeros",
        norm: bool = True,
        activation: Activation = "relu",
        transposed: bool = False,
    ) -> None:
        conv: nn.Module
        if transposed:
            conv = nn.ConvTranspose2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                output_padding=stride - 1,
            )
        else:
            conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, padding_mode=padding_mode
            )
        layers: list[nn.Module] = [conv]
        if norm:
            layers.append(instance_norm(out_channels))
        layers.append(activation_layer(activation))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """``x + conv3-norm-relu-conv3-norm(x)`` with reflect padding (same channels, same size)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(channels, channels, 3, padding=1, padding_mode="reflect"),
            ConvBlock(channels, channels, 3, padding=1, padding_mode="reflect", activation="none"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def check_divisible_by_4(x: torch.Tensor, network: str = "the generator") -> None:
    """A ModelError unless the images' height and width are multiples of 4 (two stride-2
    stages down and up again must give back the same size)."""
    height, width = x.shape[-2:]
    if height % 4 or width % 4:
        raise ModelError(
            f"{network} needs height and width divisible by 4, got {height}x{width}; "
            "pad with harmonize.imaging.preprocess.pad_to_multiple(image, 4)"
        )


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator: image (N, C, H, W) in [-1, 1] -> same shape in [-1, 1].

    ``c7s1-ngf, d(2 ngf), d(4 ngf), n_blocks x R(4 ngf), u(2 ngf), u(ngf), c7s1-C, tanh``.
    H and W must be divisible by 4 (``harmonize.imaging.preprocess.pad_to_multiple``).

    ``residual``: the last convolution's output is added to the input before the tanh, in the
    tanh's own (atanh) coordinates: ``tanh(atanh(x) + h)``. A zero ``h`` is the identity, so
    the network learns the change from the input rather than the whole image (not the
    published recipe; an option of this project).
    """

    #: How far inside (-1, 1) the input is pulled before its atanh (finite at the extremes).
    RESIDUAL_MARGIN = 1e-3

    def __init__(
        self, ngf: int = 64, n_blocks: int = 9, channels: int = 1, residual: bool = False
    ) -> None:
        super().__init__()
        self.residual = residual
        self.stem = ConvBlock(channels, ngf, 7, padding=3, padding_mode="reflect")
        self.down = nn.Sequential(
            ConvBlock(ngf, 2 * ngf, 3, stride=2, padding=1),
            ConvBlock(2 * ngf, 4 * ngf, 3, stride=2, padding=1),
        )
        self.blocks = nn.Sequential(*(ResidualBlock(4 * ngf) for _ in range(n_blocks)))
        self.up = nn.Sequential(
            ConvBlock(4 * ngf, 2 * ngf, 3, stride=2, padding=1, transposed=True),
            ConvBlock(2 * ngf, ngf, 3, stride=2, padding=1, transposed=True),
        )
        self.head = ConvBlock(
            ngf,
            channels,
            7,
            padding=3,
            padding_mode="reflect",
            norm=False,
            activation="none" if residual else "tanh",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible_by_4(x)
        out = self.head(self.up(self.blocks(self.down(self.stem(x)))))
        if not self.residual:
            return out
        return torch.tanh(torch.atanh(x * (1 - self.RESIDUAL_MARGIN)) + out)


class PatchDiscriminator(nn.Module):
    """The PatchGAN discriminator: one real/fake score (a logit) per overlapping image patch.

    ``n_layers`` stride-2 4x4 convolutions (channels ndf, 2 ndf, ... capped at 8 ndf; no norm on
    the first), one stride-1 4x4 convolution, and a 4x4 convolution to one channel. With
    ``n_layers=3`` each score sees a 70x70 patch and a 256x256 input gives 30x30 scores.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 3, channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            ConvBlock(channels, ndf, 4, stride=2, padding=1, norm=False, activation="leaky_relu")
        ]
        width = ndf
        for index in range(1, n_layers + 1):
            out = ndf * min(2**index, 8)
            stride = 2 if index < n_layers else 1
            layers.append(ConvBlock(width, out, 4, stride, 1, activation="leaky_relu"))
            width = out
        layers.append(ConvBlock(width, 1, 4, padding=1, norm=False, activation="none"))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DiscriminatorPair(nn.Module):
    """Both discriminators in one module (``d_a`` judges domain A, ``d_b`` domain B): one forward
    scores a domain-A and a domain-B batch, so DDP sees one forward per step.

    A one-sided method (CUT: source -> target only) has no ``d_a``; its domain-A scores are None.
    """

    def __init__(self, d_a: nn.Module | None, d_b: nn.Module) -> None:
        super().__init__()
        self.d_a = d_a
        self.d_b = d_b

    def forward(self, images_a: torch.Tensor | None, images_b: torch.Tensor) -> tuple[Any, Any]:
        scores_a = None if self.d_a is None or images_a is None else self.d_a(images_a)
        return scores_a, self.d_b(images_b)


# -- weight init -----------------------------------------------------------------------------------
def _init_weights(
    module: ModuleT, seed: int, draw: Callable[[torch.Tensor, torch.Generator], object]
) -> ModuleT:
    """Every convolution's (and linear layer's) weights filled by ``draw`` in module order from
    one private generator seeded by ``seed``, biases set to 0, in place. Returns ``module``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                weight = torch.empty(layer.weight.shape)
                draw(weight, generator)
                layer.weight.copy_(weight)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


def init_normal(module: ModuleT, std: float = 0.02, seed: int = 0) -> ModuleT:
    """Initialise every convolution's weights from N(0, std) and its biases to 0, in place,
    from a private generator seeded by ``seed`` (the global RNG is not touched; the CycleGAN
    init). Returns it."""
    return _init_weights(
        module, seed, lambda weight, generator: weight.normal_(0.0, std, generator=generator)
    )


def init_kaiming(module: ModuleT, seed: int = 0) -> ModuleT:
    """He-normal (fan-in) convolution weights and zero biases, in place, from a private generator
    seeded by ``seed`` (the published UNIT init; the global RNG is not touched). Returns it."""
    return _init_weights(
        module,
        seed,
        lambda weight, generator: nn.init.kaiming_normal_(
            weight, a=0.0, mode="fan_in", generator=generator
        ),
    )


def init_xavier(module: ModuleT, gain: float = 0.02, seed: int = 0) -> ModuleT:
    """Xavier-normal weights (std ``gain * sqrt(2 / (fan_in + fan_out))``) and zero biases, in
    place, from a private generator seeded by ``seed`` (the published CUT init, gain 0.02; the
    global RNG is not touched). Returns it."""
    return _init_weights(
        module,
        seed,
        lambda weight, generator: nn.init.xavier_normal_(weight, gain=gain, generator=generator),
    )


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for param in module.parameters():
        param.requires_grad_(flag)
