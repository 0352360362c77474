"""Shared pieces of the image-to-image GANs (CycleGAN, UNIT): layers, networks, init, losses,
the fake-image history pool and the learning-rate schedule.

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

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harmonize.errors import ConfigError, ModelError

Activation = Literal["relu", "leaky_relu", "tanh", "none"]
PaddingMode = Literal["zeros", "reflect"]
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _activation(name: Activation) -> nn.Module:
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
        layers.append(_activation(activation))
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


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator: image (N, C, H, W) in [-1, 1] -> same shape in [-1, 1].

    ``c7s1-ngf, d(2 ngf), d(4 ngf), n_blocks x R(4 ngf), u(2 ngf), u(ngf), c7s1-C, tanh``.
    H and W must be divisible by 4 (``harmonize.imaging.preprocess.pad_to_multiple``).
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9, channels: int = 1) -> None:
        super().__init__()
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
            ngf, channels, 7, padding=3, padding_mode="reflect", norm=False, activation="tanh"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % 4 or width % 4:
            raise ModelError(
                f"the generator needs height and width divisible by 4, got {height}x{width}; "
                "pad with harmonize.imaging.preprocess.pad_to_multiple(image, 4)"
            )
        return self.head(self.up(self.blocks(self.down(self.stem(x)))))


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


def init_normal(module: ModuleT, std: float = 0.02, seed: int = 0) -> ModuleT:
    """Initialise every convolution's weights from N(0, std) and its biases to 0, in place,
    from a private generator seeded by ``seed`` (the global RNG is not touched). Returns it."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                weight = torch.empty(layer.weight.shape).normal_(0.0, std, generator=generator)
                layer.weight.copy_(weight)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for param in module.parameters():
        param.requires_grad_(flag)


# -- GAN losses: prediction logits, and whether the images they score should count as real ---------
GanLoss = Callable[[torch.Tensor, bool], torch.Tensor]


def least_squares_gan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """LSGAN (Mao et al. 2017), CycleGAN's choice: mean (D(x) - 1)^2 for real, D(x)^2 for fake."""
    prediction = prediction.float()
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def vanilla_gan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """The original GAN's cross-entropy on logits."""
    prediction = prediction.float()
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.binary_cross_entropy_with_logits(prediction, target)


GAN_LOSSES: dict[str, GanLoss] = {
    "least_squares": least_squares_gan_loss,
    "vanilla": vanilla_gan_loss,
}


def gan_loss(name: str) -> GanLoss:
    if name not in GAN_LOSSES:
        raise ConfigError(f'unknown gan_loss "{name}"; choose one of {sorted(GAN_LOSSES)}')
    return GAN_LOSSES[name]


def linear_decay(steps: int, decay_start: int) -> Callable[[int], float]:
    """The LR factor per step: 1 until ``decay_start``, then linearly down to 0 at ``steps``.

    For ``torch.optim.lr_scheduler.LambdaLR``. A plain function, so the scheduler's state_dict
    holds only its step count: resuming with a longer ``steps`` follows the new schedule.
    """
    if not 0 <= decay_start <= steps:
        raise ConfigError(f"decay_start must be in 0..steps ({steps}), got {decay_start}")

    def factor(step: int) -> float:
        if step < decay_start:
            return 1.0
        return max(0.0, (steps - step) / (steps - decay_start))

    return factor


class ImagePool:
    """The history of generated images the discriminator learns from (Shrivastava et al. 2017).

    ``query(images)`` returns a batch of the same size: while the pool holds fewer than ``size``
    images every new image is stored and returned; once full, each new image is, with
    probability 1/2, swapped with a uniformly chosen stored one (the stored one is returned and
    the new one kept), otherwise returned as is. ``size`` 0 returns the input unchanged. Images
    are stored detached. Random draws come from a private, seeded CPU generator whose state is
    part of ``state_dict`` so a resumed run makes the same draws.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ConfigError(f"image pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() > 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator).item())
                out.append(self.images[index])
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "images": [image.cpu() for image in self.images],
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        if state["size"] != self.size:
            raise ConfigError(
                f"image pool state holds a pool of {state['size']} images, this pool has "
                f"{self.size}; resume with the pool_size the checkpoint was trained with"
            )
        self.images = [image.to(device) for image in state["images"]]
        self.generator.set_state(state["rng"])


# -- what every GAN recipe shares ------------------------------------------------------------------
def seed_of(*entropy: int) -> int:
    """One 32-bit seed from several integers (e.g. (seed, rank, stream))."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


class GanRecipeBase:
    """The mechanics of a GAN recipe (``CycleGANRecipe``, ``UNITRecipe``) apart from its networks
    and losses: device, precision, memory format, compilation and DDP wrapping of the two network
    pairs, batches moved into place, autocast, the current LR and the config as plain values."""

    method: ClassVar[str]
    config: Any
    step: int
    generators: nn.Module
    discriminators: nn.Module
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    scheduler_g: torch.optim.lr_scheduler.LRScheduler
    scheduler_d: torch.optim.lr_scheduler.LRScheduler

    def _place_networks(
        self,
        generators: nn.Module,
        discriminators: nn.Module,
        *,
        device: torch.device | str,
        precision: str,
        channels_last: bool,
        compile: bool,
        wrap: Callable[[nn.Module], nn.Module] | None,
    ) -> None:
        """Put the recipe's two (initialised) network pairs on ``device`` in the memory format,
        compile them in place when asked, and keep their training views ``wrap``-ped (DDP) as
        ``generators_train`` / ``discriminators_train``."""
        if precision not in ("bf16", "fp32"):
            raise ConfigError(f'precision must be "bf16" or "fp32", got "{precision}"')
        self.device = torch.device(device)
        self.bf16 = precision == "bf16"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for pair in (generators, discriminators):
            pair.to(self.device)
            pair.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        if compile:
            for net in (*generators.children(), *discriminators.children()):
                net.compile()
        wrap = wrap or (lambda module: module)
        self.generators_train = wrap(generators)
        self.discriminators_train = wrap(discriminators)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, non_blocking=True).contiguous(
            memory_format=self.memory_format
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer_g.param_groups[0]["lr"])

    def model_config(self) -> dict[str, Any]:
        """The config as plain values: the method's ``build_generator`` rebuilds the
        source->target generator from it."""
        return asdict(self.config)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly: tensors and plain values only."""
        return {
            "step": self.step,
            "generators": self.generators.state_dict(),
            "discriminators": self.discriminators.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "scheduler_g": self.scheduler_g.state_dict(),
            "scheduler_d": self.scheduler_d.state_dict(),
            **self._extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``'s output (e.g. read with ``torch.load(weights_only=True)``)."""
        try:
            self.generators.load_state_dict(state["generators"])
            self.discriminators.load_state_dict(state["discriminators"])
        except RuntimeError as err:
            raise ConfigError(
                f"the checkpoint's networks do not fit this {self.method} config ({err}); resume "
                "with the model settings the checkpoint was trained with"
            ) from err
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.scheduler_g.load_state_dict(state["scheduler_g"])
        self.scheduler_d.load_state_dict(state["scheduler_d"])
        self._load_extra_state(state)
        self.step = int(state["step"])

    def _extra_state(self) -> dict[str, Any]:
        """The recipe's own random state beyond networks, optimizers and schedules."""
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``_extra_state`` saved."""
