"""The CUT / FastCUT training recipe (Park et al. 2020) for unpaired site-to-site harmonization.

One generator G (source -> target), one PatchGAN D (target) and the patch heads F. A generator
step (G and F, one optimizer) minimises ``lambda_gan * GAN(D(G(x)))`` plus the PatchNCE loss:
each sampled patch of G(x), through G's encoder and F, must pick the patch of x at the same
position among the patches of x (temperature ``nce_t``), averaged over ``nce_layers``, weight
``lambda_nce``. With ``nce_idt`` (CUT) the same between y and G(y) too, the two averaged; without
it (FastCUT) only x. Then a discriminator step on real targets and the latest translations, its
loss halved. The step and its DDP safety are the shared template of ``harmonize.gan.recipe``
(one-sided: no ``d_a``). Patch positions come from the recipe's own seeded stream, saved with
its state, so a resumed run samples the same patches.

Example::

    recipe = CUTRecipe({"ngf": 8, "n_blocks": 2, "nce_layers": [0, 4, 7, 10]}, steps=1000)
    losses = recipe.train_step(real_a, real_b)      # (N, 1, H, W) in [-1, 1], H, W % 4 == 0
    generator = build_generator(recipe.model_config())
    generator.load_state_dict(recipe.generator_state())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from harmonize.gan.cut.config import CUTConfig
from harmonize.gan.cut.networks import (
    CUTGenerators,
    CUTImages,
    build_discriminators,
    sample_patch_ids,
)
from harmonize.gan.layers import DiscriminatorPair, init_xavier
from harmonize.gan.recipe import GanRecipeBase, seed_of
from harmonize.gan.schedules import linear_decay

LOSS_NAMES = ("gan_ab", "nce", "nce_idt", "g_total", "d_b")


class CUTRecipe(GanRecipeBase[CUTImages, torch.Tensor]):
    """Networks, losses, optimizers, LR schedules and the patch stream of one CUT training run.

    Takes ``GanRecipeBase``'s arguments. ``config``: a ``CUTConfig`` or its plain-dict
    overrides. The LR is constant until ``decay_start`` (default ``steps // 2``), then decays
    linearly to 0 at ``steps`` (the published 200 + 200 epochs). Weights are Xavier-normal with
    gain 0.02 (the published init); patch positions are drawn from a CPU stream seeded by
    (seed, rank). ``nce`` and ``nce_idt`` are reported as they enter ``g_total`` (weighted, and
    halved with nce_idt); ``nce_idt`` is 0 without it.
    """

    config: CUTConfig
    generators: CUTGenerators
    method: ClassVar[str] = "cut"
    config_class: ClassVar[type[Any]] = CUTConfig
    loss_names: ClassVar[tuple[str, ...]] = LOSS_NAMES

    @torch.no_grad()
    def evaluate(
        self, real_a: torch.Tensor, real_b: torch.Tensor, patch_seed: int = 0
    ) -> dict[str, float]:
        """Every loss term for this batch with the current networks, changing nothing: the patch
        positions come from a fresh stream seeded by ``patch_seed``, so two calls with the same
        seed contrast the same patches."""
        stream = torch.Generator().manual_seed(patch_seed)
        return self._evaluate(real_a, real_b, self._patch_ids(real_a, real_b, stream))

    def _patch_ids(
        self, real_a: torch.Tensor, real_b: torch.Tensor, stream: torch.Generator
    ) -> list[torch.Tensor]:
        """Patch positions per contrasted layer for real_a's images (then real_b's, with
        nce_idt), on the recipe's device."""
        groups = (real_a.shape[0], real_b.shape[0]) if self.config.nce_idt else (real_a.shape[0],)
        size = (real_a.shape[-2], real_a.shape[-1])
        ids = sample_patch_ids(
            self.config.nce_layers, size, self.config.num_patches, groups, stream
        )
        return [i.to(self.device) for i in ids]

    # -- the hooks of the shared template ----------------------------------------------------------
    def _build_networks(self) -> tuple[nn.Module, DiscriminatorPair]:
        return CUTGenerators(self.config), build_discriminators(
            self.config.ndf, self.config.n_layers_d
        )

    def _init_weights(self, module: nn.Module, seed: int) -> None:
        init_xavier(module, gain=0.02, seed=seed)

    def _schedule(self, steps: int, decay_start: int | None) -> Callable[[int], float]:
        return linear_decay(steps, steps // 2 if decay_start is None else decay_start)

    def _init_random_state(self, seed: int, rank: int) -> None:
        self.patches = torch.Generator().manual_seed(seed_of(seed, rank, 2))

    def _generator_inputs(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[list[torch.Tensor]]:
        return (self._patch_ids(real_a, real_b, self.patches),)

    def _generator_losses(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        images: CUTImages,
        scores_fake_a: torch.Tensor | None,
        scores_fake_b: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        zero = torch.zeros((), device=real_a.device)
        nce_weight = cfg.lambda_nce * (0.5 if images.nce_idt is not None else 1.0)
        losses = {
            "gan_ab": cfg.lambda_gan * self.gan_loss(scores_fake_b, True),
            "nce": nce_weight * images.nce,
            "nce_idt": zero if images.nce_idt is None else nce_weight * images.nce_idt,
        }
        losses["g_total"] = sum(losses.values(), zero)
        return losses

    def _inference_generator(self) -> nn.Module:
        return self.generators.g_ab

    def _extra_state(self) -> dict[str, Any]:
        return {"patches": self.patches.get_state()}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.patches.set_state(state["patches"])
