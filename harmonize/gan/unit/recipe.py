"""The UNIT training recipe (Liu, Breuel and Kautz 2017) for unpaired site-to-site harmonization.

One training step, as in the paper: a generator step (encoders and decoders) on
``lambda_recon * L1(G_a(z_a), x_a) + lambda_kl * KL(mu_a)`` per domain, the least-squares GAN
loss of the translations under multi-scale discriminators (weight ``lambda_gan``), and the cycle
terms ``lambda_cycle * L1(G_a(E_b(G_b(z_a))), x_a) + lambda_cycle_kl * KL(E_b(G_b(z_a)))`` per
domain; then a discriminator step on real images and the (detached) latest translations. The
encoder's Gaussian has unit variance, so the KL term against N(0, I) is the mean of ``mu ** 2``.

The step and its DDP safety are the shared template of ``harmonize.gan.recipe``. UNIT's own
part of that story: the shared blocks run several times in the generators' one forward; their
gradients from both domains add up before the one backward completes, which DDP allows.
Sampling noise is drawn by the recipe from its own seeded stream and passed in, so a resumed run
draws the same noise.

Example::

    recipe = UNITRecipe({"ngf": 8, "n_blocks": 2, "n_layers_d": 2}, steps=1000, seed=0)
    losses = recipe.train_step(real_a, real_b)      # (N, 1, H, W) in [-1, 1], H, W % 4 == 0
    generator = build_generator(recipe.model_config())
    generator.load_state_dict(recipe.generator_state())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from harmonize.gan.layers import DiscriminatorPair, init_kaiming
from harmonize.gan.losses import kl_unit_variance
from harmonize.gan.recipe import GanRecipeBase, seed_of
from harmonize.gan.schedules import step_decay
from harmonize.gan.unit.config import UNITConfig
from harmonize.gan.unit.networks import UNITGenerators, UNITImages, build_discriminators

LOSS_NAMES = (
    "gan_ab",
    "gan_ba",
    "recon_a",
    "recon_b",
    "kl_a",
    "kl_b",
    "cycle_a",
    "cycle_b",
    "cycle_kl_a",
    "cycle_kl_b",
    "g_total",
    "d_a",
    "d_b",
)


class UNITRecipe(GanRecipeBase[UNITImages, list[torch.Tensor]]):
    """Networks, losses, optimizers, LR schedules and the sampling stream of one UNIT run.

    Takes ``GanRecipeBase``'s arguments. ``config``: a ``UNITConfig`` or its plain-dict
    overrides. ``steps`` sets the default LR step size (``steps // 10``); ``decay_start`` is
    accepted for the training loop's interface and unused: UNIT's published schedule is a step
    decay from the start (``lr_step_size``, ``lr_gamma``). Weights are He-normal; the latent
    noise is drawn from a stream seeded by (seed, rank).
    """

    method: ClassVar[str] = "unit"
    config_class: ClassVar[type[Any]] = UNITConfig
    loss_names: ClassVar[tuple[str, ...]] = LOSS_NAMES
    config: UNITConfig
    generators: UNITGenerators

    @torch.no_grad()
    def evaluate(
        self, real_a: torch.Tensor, real_b: torch.Tensor, noise_seed: int | None = 0
    ) -> dict[str, float]:
        """Every loss term for this batch with the current networks, changing nothing: the
        latent noise comes from a fresh stream seeded by ``noise_seed`` (None: the means), so
        two calls with the same seed see the same samples."""
        if noise_seed is None:
            return self._evaluate(real_a, real_b, None, None)
        stream = torch.Generator(self.device).manual_seed(noise_seed)
        return self._evaluate(
            real_a, real_b, self._noise(real_a, stream), self._noise(real_b, stream)
        )

    def _noise(self, images: torch.Tensor, stream: torch.Generator) -> torch.Tensor:
        """N(0, 1) noise for a batch's two latent samples (its code and its translation's)."""
        n, _, height, width = images.shape
        shape = (2, n, 4 * self.config.ngf, height // 4, width // 4)
        return torch.randn(shape, generator=stream, device=self.device)

    # -- the hooks of the shared template ----------------------------------------------------------
    def _build_networks(self) -> tuple[nn.Module, DiscriminatorPair]:
        cfg = self.config
        return (
            UNITGenerators(cfg.ngf, cfg.n_blocks, cfg.n_shared_blocks),
            build_discriminators(cfg.ndf, cfg.n_layers_d, cfg.n_scales_d),
        )

    def _init_weights(self, module: nn.Module, seed: int) -> None:
        init_kaiming(module, seed=seed)

    def _adam_options(self) -> dict[str, Any]:
        return {"weight_decay": self.config.weight_decay}

    def _schedule(self, steps: int, decay_start: int | None) -> Callable[[int], float]:
        del decay_start  # see the class docstring
        return step_decay(self.config.lr_step_size or max(1, steps // 10), self.config.lr_gamma)

    def _init_random_state(self, seed: int, rank: int) -> None:
        self.noise = torch.Generator(self.device).manual_seed(seed_of(seed, rank, 2))

    def _generator_inputs(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._noise(real_a, self.noise), self._noise(real_b, self.noise)

    def _generator_losses(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        images: UNITImages,
        scores_fake_a: list[torch.Tensor],
        scores_fake_b: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        real_a, real_b = real_a.float(), real_b.float()
        losses = {
            "gan_ab": cfg.lambda_gan * self._gan_loss(scores_fake_b, True),
            "gan_ba": cfg.lambda_gan * self._gan_loss(scores_fake_a, True),
            "recon_a": cfg.lambda_recon * F.l1_loss(images.rec_a.float(), real_a),
            "recon_b": cfg.lambda_recon * F.l1_loss(images.rec_b.float(), real_b),
            "kl_a": cfg.lambda_kl * kl_unit_variance(images.mu_a),
            "kl_b": cfg.lambda_kl * kl_unit_variance(images.mu_b),
            "cycle_a": cfg.lambda_cycle * F.l1_loss(images.cyc_a.float(), real_a),
            "cycle_b": cfg.lambda_cycle * F.l1_loss(images.cyc_b.float(), real_b),
            "cycle_kl_a": cfg.lambda_cycle_kl * kl_unit_variance(images.mu_ab),
            "cycle_kl_b": cfg.lambda_cycle_kl * kl_unit_variance(images.mu_ba),
        }
        losses["g_total"] = sum(losses.values(), torch.zeros((), device=real_a.device))
        return losses

    def _gan_loss(self, scores: list[torch.Tensor], real: bool) -> torch.Tensor:
        """The GAN loss summed over the discriminator's scales."""
        return torch.stack([self.gan_loss(s, real) for s in scores]).sum()

    def _discriminator_loss(
        self, scores_real: list[torch.Tensor], scores_fake: list[torch.Tensor]
    ) -> torch.Tensor:
        """``lambda_gan`` times the real and fake terms, summed over scales."""
        real = self._gan_loss(scores_real, True)
        fake = self._gan_loss(scores_fake, False)
        return self.config.lambda_gan * (real + fake)

    def _inference_generator(self) -> nn.Module:
        return self.generators.translator()

    def _extra_state(self) -> dict[str, Any]:
        return {"noise": self.noise.get_state()}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.noise.set_state(state["noise"])
