"""CycleGAN's networks: both ResNet generators in one module, both PatchGANs in another, and the
source->target generator rebuilt from a saved model config.

Domain A is the source site (e.g. Montgomery), domain B the target site (Shenzhen). ``g_ab`` maps
A->B (the one kept for inference) and ``g_ba`` B->A; ``d_a`` judges domain A (real A vs G_BA's
fakes) and ``d_b`` domain B. One module per player keeps DDP to one forward per step.

Example::

    generator = build_generator(recipe.model_config())
    generator.load_state_dict(recipe.generator_state())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from harmonize.gan.cyclegan.config import CycleGANConfig
from harmonize.gan.layers import DiscriminatorPair, PatchDiscriminator, ResnetGenerator
from harmonize.validate import field_names


class GeneratedImages(NamedTuple):
    """Every image one generator step makes; the ``idt_*`` are None when identity loss is off."""

    fake_b: torch.Tensor  # G_AB(real_a)
    rec_a: torch.Tensor  # G_BA(G_AB(real_a))
    idt_b: torch.Tensor | None  # G_AB(real_b), should stay real_b
    fake_a: torch.Tensor  # G_BA(real_b)
    rec_b: torch.Tensor  # G_AB(G_BA(real_b))
    idt_a: torch.Tensor | None  # G_BA(real_a), should stay real_a


class GeneratorPair(nn.Module):
    """Both generators in one module: one forward makes every image of a generator step."""

    def __init__(self, ngf: int, n_blocks: int, residual: bool = False) -> None:
        super().__init__()
        self.g_ab = ResnetGenerator(ngf, n_blocks, residual=residual)
        self.g_ba = ResnetGenerator(ngf, n_blocks, residual=residual)

    def forward(
        self, real_a: torch.Tensor, real_b: torch.Tensor, identity: bool = True
    ) -> GeneratedImages:
        # Instance norm is per image, so running a generator once on [x; y] equals running it
        # on x and y separately, with fewer, larger kernels.
        n = real_a.shape[0]
        idt_a = idt_b = None
        if identity:
            fake_b, idt_b = self.g_ab(torch.cat([real_a, real_b])).split([n, real_b.shape[0]])
            fake_a, idt_a = self.g_ba(torch.cat([real_b, real_a])).split([real_b.shape[0], n])
        else:
            fake_b, fake_a = self.g_ab(real_a), self.g_ba(real_b)
        return GeneratedImages(fake_b, self.g_ba(fake_b), idt_b, fake_a, self.g_ab(fake_a), idt_a)


def build_discriminators(ndf: int, n_layers: int) -> DiscriminatorPair:
    """``d_a`` and ``d_b``: one PatchGAN per domain."""
    return DiscriminatorPair(PatchDiscriminator(ndf, n_layers), PatchDiscriminator(ndf, n_layers))


def build_generator(model_config: Mapping[str, Any]) -> nn.Module:
    """The source->target generator for ``model_config`` (``CycleGANRecipe.model_config()``,
    as saved with the model), with untrained weights: load ``generator_state()`` into it.

    Keys that are not CycleGAN settings (e.g. ``load_size``, which inference reads) are ignored.
    """
    known = field_names(CycleGANConfig)
    config = CycleGANConfig.from_dict({k: v for k, v in model_config.items() if k in known})
    return ResnetGenerator(config.ngf, config.n_blocks, residual=config.residual)
