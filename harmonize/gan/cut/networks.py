"""CUT's networks: the ResNet generator (CycleGAN's) read out at its encoder layers, the patch MLP
heads, both in one module with the PatchNCE terms, the one PatchGAN, and the source->target
generator rebuilt from a saved model config.

Domain A is the source site, B the target site. ``g_ab`` maps A->B (the only generator, kept for
inference); ``f`` holds one MLP head per contrasted layer; the discriminator pair has only
``d_b``. The encoder layers are numbered as ``CUTConfig.nce_layers`` says: 0 the input image,
then each conv, norm and ReLU of the three convolutions, then each residual block.

Example::

    generator = build_generator(recipe.model_config())
    generator.load_state_dict(recipe.generator_state())
    out, features = run_generator(generator, images, (0, 4, 7, 10, 14))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from harmonize.gan.cut.config import CUTConfig
from harmonize.gan.layers import (
    DiscriminatorPair,
    PatchDiscriminator,
    ResnetGenerator,
    check_divisible_by_4,
)
from harmonize.gan.losses import patch_nce_loss
from harmonize.validate import field_names


# -- the generator's encoder layers ----------------------------------------------------------------
def encoder_layers(generator: ResnetGenerator) -> list[nn.Module]:
    """The encoder as ``nce_layers`` numbers it from 1 (0 is the input image): the first
    convolution's conv, norm and ReLU (1-3), those of each stride-2 convolution (4-6, 7-9), then
    the residual blocks (10 ...). The generator's own modules, in order."""
    layers = list(generator.stem.children())
    for block in generator.down:
        layers += block.children()
    return layers + list(generator.blocks.children())


def encoder_channels(index: int, ngf: int, channels: int = 1) -> int:
    """The channels of encoder layer ``index``'s output."""
    if index == 0:
        return channels
    return ngf * 2 ** min((index - 1) // 3, 2)


def encoder_stride(index: int) -> int:
    """How many times smaller than the image encoder layer ``index``'s output is."""
    return 1 if index < 4 else 2 ** min((index - 1) // 3, 2)


def run_generator(
    generator: ResnetGenerator,
    images: torch.Tensor,
    layers: Sequence[int],
    *,
    decode: bool = True,
) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """The generator's output (None when not ``decode``: the encoder runs only up to the last
    of ``layers``) and its encoder's outputs at ``layers`` (increasing), in that order. The same
    modules as ``generator(images)``, so the same output."""
    check_divisible_by_4(images)
    steps = encoder_layers(generator)
    wanted = set(layers)
    # A kept map that an in-place ReLU would overwrite next (a norm output) is kept as a copy.
    overwritten = [bool(getattr(step, "inplace", False)) for step in steps[1:]] + [False]
    kept = [images] if 0 in wanted else []
    x = images
    for index, step in enumerate(steps[: len(steps) if decode else max(layers)], start=1):
        x = step(x)
        if index in wanted:
            kept.append(x.clone() if overwritten[index - 1] else x)
    if not decode:
        return None, kept
    return generator.head(generator.up(x)), kept


# -- the patch heads and the generator module ------------------------------------------------------
class PatchSampleF(nn.Module):
    """F of the paper's code (H_l in the paper): for each contrasted layer, the features at the
    sampled positions through a 2-layer MLP (``Linear``, ReLU, ``Linear``), L2-normalised.

    Built eagerly from the layers' channel counts (the code builds it at the first forward), so
    its weights exist from the start: initialised with the generator, held by every checkpoint.
    """

    def __init__(self, channels: Sequence[int], width: int) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, width), nn.ReLU(), nn.Linear(width, width)) for c in channels
        )

    def forward(
        self, features: Sequence[torch.Tensor], patch_ids: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """``features[l]`` (N, C, H, W) at ``patch_ids[l]`` (N, S: flat positions per image)
        -> (N, S, width) unit vectors, float32."""
        out = []
        for feature, ids, mlp in zip(features, patch_ids, self.mlps, strict=True):
            flat = feature.flatten(2)  # (N, C, H * W)
            picked = flat.gather(2, ids[:, None, :].expand(-1, flat.shape[1], -1))
            out.append(F.normalize(mlp(picked.transpose(1, 2)).float(), dim=-1))
        return out


def sample_patch_ids(
    layers: Sequence[int],
    size: tuple[int, int],
    num_patches: int,
    groups: Sequence[int],
    generator: torch.Generator,
) -> list[torch.Tensor]:
    """Per layer, (sum(groups), S) flat positions into its feature map of images of ``size``
    (H, W): S = min(num_patches, positions) distinct positions drawn from ``generator`` (CPU)
    for each group of images (as the code: the same positions for a batch), the first group's
    for every layer first (so its draws do not depend on the other groups)."""
    draws = []
    for n in groups:
        per_layer = []
        for layer in layers:
            stride = encoder_stride(layer)
            positions = (size[0] // stride) * (size[1] // stride)
            chosen = torch.randperm(positions, generator=generator)[:num_patches]
            per_layer.append(chosen.expand(n, -1))
        draws.append(per_layer)
    return [torch.cat(group_ids) for group_ids in zip(*draws, strict=True)]


class CUTImages(NamedTuple):
    """What one generator step makes: the translation, the identity image and the PatchNCE
    terms (mean over layers and images, unweighted); the ``idt`` ones None without nce_idt."""

    fake_b: torch.Tensor  # G(real_a)
    idt_b: torch.Tensor | None  # G(real_b), should stay real_b
    nce: torch.Tensor  # PatchNCE(real_a, G(real_a))
    nce_idt: torch.Tensor | None  # PatchNCE(real_b, G(real_b))

    @property
    def fake_a(self) -> None:
        """One-sided: nothing is translated into domain A."""
        return None


class CUTGenerators(nn.Module):
    """The generator and the patch heads in one module: one forward makes every image and every
    PatchNCE term of a generator step (so DDP sees one forward per step)."""

    def __init__(self, config: CUTConfig) -> None:
        super().__init__()
        self.g_ab = ResnetGenerator(config.ngf, config.n_blocks)
        channels = [encoder_channels(i, config.ngf) for i in config.nce_layers]
        self.f = PatchSampleF(channels, config.netf_nc)
        self.nce_layers = config.nce_layers
        self.nce_t = config.nce_t
        self.nce_idt = config.nce_idt

    def forward(
        self, real_a: torch.Tensor, real_b: torch.Tensor, patch_ids: Sequence[torch.Tensor]
    ) -> CUTImages:
        """``patch_ids`` (``sample_patch_ids``): positions for real_a's images, then real_b's
        (with nce_idt)."""
        n = real_a.shape[0]
        real = torch.cat([real_a, real_b]) if self.nce_idt else real_a
        # Instance norm is per image, so one pass over [x; y] equals a pass over each.
        fake, real_features = run_generator(self.g_ab, real, self.nce_layers)
        assert fake is not None
        _, fake_features = run_generator(self.g_ab, fake, self.nce_layers, decode=False)
        with torch.no_grad():  # the keys: the code detaches them
            keys = self.f(real_features, patch_ids)
        queries = self.f(fake_features, patch_ids)
        per_image = torch.stack(
            [patch_nce_loss(q, k, self.nce_t) for q, k in zip(queries, keys, strict=True)]
        ).mean(0)
        if not self.nce_idt:
            return CUTImages(fake, None, per_image.mean(), None)
        return CUTImages(fake[:n], fake[n:], per_image[:n].mean(), per_image[n:].mean())


def build_discriminators(ndf: int, n_layers: int) -> DiscriminatorPair:
    """The target site's PatchGAN as ``d_b``; no ``d_a`` (one-sided)."""
    return DiscriminatorPair(None, PatchDiscriminator(ndf, n_layers))


def build_generator(model_config: Mapping[str, Any]) -> nn.Module:
    """The source->target generator for ``model_config`` (``CUTRecipe.model_config()``, as
    saved with the model), with untrained weights: load ``generator_state()`` into it.

    Keys that are not CUT settings (e.g. ``load_size``, which inference reads) are ignored.
    """
    known = field_names(CUTConfig)
    config = CUTConfig.from_dict({k: v for k, v in model_config.items() if k in known})
    return ResnetGenerator(config.ngf, config.n_blocks)
