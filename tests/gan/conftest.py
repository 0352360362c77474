"""Fixtures of the GAN tests: toy two-site batches and tiny recipes of each method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from harmonize.gan.cut.recipe import CUTRecipe
from harmonize.gan.cyclegan.recipe import CycleGANRecipe
from harmonize.gan.recipe import GanRecipeBase
from harmonize.gan.unit.recipe import UNITRecipe

RECIPES: dict[str, type[GanRecipeBase]] = {
    "cyclegan": CycleGANRecipe,
    "unit": UNITRecipe,
    "cut": CUTRecipe,
}
TINY: dict[str, dict[str, Any]] = {
    "cyclegan": {"ngf": 8, "ndf": 8, "n_blocks": 2},
    # 32-px crops: 3 discriminator scales (32, 16, 8 px) of 2 stride-2 layers each.
    "unit": {"ngf": 8, "ndf": 8, "n_blocks": 2, "n_shared_blocks": 1, "n_layers_d": 2},
    # Every kind of contrasted layer: the input, a norm (copied before its in-place ReLU), a
    # stride-2 conv, a ReLU, both residual blocks; 32-px crops have 64 positions at 1/4.
    "cut": {
        "ngf": 8,
        "ndf": 8,
        "n_blocks": 2,
        "nce_layers": [0, 2, 4, 9, 10, 11],
        "num_patches": 64,
        "netf_nc": 32,
    },
}


def _toy_batch(seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth images; site A darker and lower-contrast than site B (a real domain gap)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(2, 1, size + 6, size + 6, generator=g), 7, 1)
    base = (base - base.amin()) / (base.amax() - base.amin())
    return 0.6 * base[:1] - 0.7, 1.6 * base[1:] - 0.8


@pytest.fixture
def toy_batch() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``toy_batch(seed, size=32)``: one (1, 1, size, size) image of each site, in [-1, 1]."""
    return _toy_batch


@pytest.fixture
def tiny_recipe() -> Callable[..., Any]:
    """``tiny_recipe(method, model={...}, steps=100, **recipe_options)``: a small recipe of
    ``method`` on the CPU; ``model`` overrides its tiny settings."""

    def make(method: str, *, model: dict[str, Any] | None = None, steps: int = 100, **options):
        return RECIPES[method]({**TINY[method], **(model or {})}, steps=steps, **options)

    return make
