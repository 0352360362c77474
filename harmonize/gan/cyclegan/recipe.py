"""The CycleGAN training recipe (Zhu et al. 2017) for unpaired site-to-site harmonization.

One training step is the paper's: a generator step (least-squares GAN + lambda_cycle * L1 cycle
+ lambda_cycle * lambda_identity * L1 identity), then a discriminator step on fakes drawn from
the image pools, each discriminator loss halved. The step itself, and its DDP safety, is the
shared template of ``harmonize.gan.recipe``; this module holds what CycleGAN puts into it.

Example::

    recipe = CycleGANRecipe({"ngf": 8, "n_blocks": 2}, steps=1000, seed=0)
    losses = recipe.train_step(real_a, real_b)      # (N, 1, H, W) in [-1, 1], H, W % 4 == 0
    generator = build_generator(recipe.model_config())
    generator.load_state_dict(recipe.generator_state())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from harmonize.gan.cyclegan.config import CycleGANConfig
from harmonize.gan.cyclegan.networks import GeneratedImages, GeneratorPair, build_discriminators
from harmonize.gan.layers import DiscriminatorPair, init_normal
from harmonize.gan.pool import ImagePool
from harmonize.gan.recipe import GanRecipeBase, seed_of
from harmonize.gan.schedules import linear_decay

LOSS_NAMES = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g_total", "d_a", "d_b")


class CycleGANRecipe(GanRecipeBase[GeneratedImages, torch.Tensor]):
    """Networks, losses, optimizers, LR schedules and image pools of one CycleGAN training run.

    Takes ``GanRecipeBase``'s arguments. ``config``: a ``CycleGANConfig`` or its plain-dict
    overrides. The LR is constant until ``decay_start`` (default ``steps // 2``), then decays
    linearly to 0 at ``steps``. Weights are N(0, 0.02); the image pools draw from streams seeded
    by (seed, rank).
    """

    method: ClassVar[str] = "cyclegan"
    config_class: ClassVar[type[Any]] = CycleGANConfig
    loss_names: ClassVar[tuple[str, ...]] = LOSS_NAMES
    config: CycleGANConfig
    generators: GeneratorPair

    @torch.no_grad()
    def evaluate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """Every loss term for this batch with the current networks, changing nothing (the
        discriminators score the current fakes, not pooled ones)."""
        return self._evaluate(real_a, real_b, *self._generator_inputs(real_a, real_b))

    # -- the hooks of the shared template ----------------------------------------------------------
    def _build_networks(self) -> tuple[nn.Module, DiscriminatorPair]:
        cfg = self.config
        return GeneratorPair(cfg.ngf, cfg.n_blocks, cfg.residual), build_discriminators(
            cfg.ndf, cfg.n_layers_d
        )

    def _init_weights(self, module: nn.Module, seed: int) -> None:
        init_normal(module, seed=seed)

    def _schedule(self, steps: int, decay_start: int | None) -> Callable[[int], float]:
        return linear_decay(steps, steps // 2 if decay_start is None else decay_start)

    def _init_random_state(self, seed: int, rank: int) -> None:
        self.pool_a = ImagePool(self.config.pool_size, seed=seed_of(seed, rank, 2))
        self.pool_b = ImagePool(self.config.pool_size, seed=seed_of(seed, rank, 3))

    def _generator_inputs(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[bool]:
        return (self.config.lambda_identity > 0,)  # identity images only when they count

    def _generator_losses(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        images: GeneratedImages,
        scores_fake_a: torch.Tensor,
        scores_fake_b: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        losses = {
            "gan_ab": self.gan_loss(scores_fake_b, True),
            "gan_ba": self.gan_loss(scores_fake_a, True),
            "cycle_a": cfg.lambda_cycle * F.l1_loss(images.rec_a.float(), real_a.float()),
            "cycle_b": cfg.lambda_cycle * F.l1_loss(images.rec_b.float(), real_b.float()),
        }
        weight = cfg.lambda_cycle * cfg.lambda_identity
        zero = torch.zeros((), device=real_a.device)
        losses["idt_a"] = (
            weight * F.l1_loss(images.idt_a.float(), real_a.float())
            if images.idt_a is not None
            else zero
        )
        losses["idt_b"] = (
            weight * F.l1_loss(images.idt_b.float(), real_b.float())
            if images.idt_b is not None
            else zero
        )
        losses["g_total"] = sum(losses.values(), zero)
        return losses

    def _discriminator_fake(self, domain: Literal["a", "b"], fake: torch.Tensor) -> torch.Tensor:
        return (self.pool_a if domain == "a" else self.pool_b).query(fake)

    def _inference_generator(self) -> nn.Module:
        return self.generators.g_ab

    def _extra_state(self) -> dict[str, Any]:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)
