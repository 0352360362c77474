"""CycleGAN (Zhu et al. 2017) for unpaired site-to-site harmonization: config, networks, recipe.

Domain A is the source site (e.g. Montgomery), domain B the target site (Shenzhen). Two ResNet
generators map A->B (``g_ab``, the one kept for inference) and B->A (``g_ba``); two PatchGAN
discriminators judge domain A (``d_a``: real A vs G_BA's fakes) and domain B (``d_b``). One
training step is the paper's: a generator step (least-squares GAN + lambda_cycle * L1 cycle +
lambda_cycle * lambda_identity * L1 identity), then a discriminator step on fakes drawn from the
image pools, each discriminator loss halved.

DDP safety by construction: both generators live in one module (``GeneratorPair``) and both
discriminators in another (``DiscriminatorPair``), so each optimizer's parameters see exactly one
forward and one backward per step through their (possibly DDP-) wrapped module. During the
generator step the discriminators are called through the *unwrapped* module with
``requires_grad`` off: gradients flow through them into the fakes, but no discriminator
parameter gets a gradient and DDP's discriminator reducer is not involved.

Example::

    recipe = CycleGANRecipe({"ngf": 8, "n_blocks": 2}, steps=1000, seed=0)
    losses = recipe.train_step(real_a, real_b)      # (N, 1, H, W) in [-1, 1], H, W % 4 == 0
    generator = build_generator(recipe.model_config())
    generator.load_state_dict(recipe.generator_state())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from harmonize.errors import ConfigError
from harmonize.methods.blocks import (
    GAN_LOSSES,
    GanRecipeBase,
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    gan_loss,
    init_normal,
    linear_decay,
    seed_of,
    set_requires_grad,
)

Precision = Literal["bf16", "fp32"]
Wrap = Callable[[nn.Module], nn.Module]

LOSS_NAMES = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g_total", "d_a", "d_b")


@dataclass(frozen=True)
class CycleGANConfig:
    """The CycleGAN recipe; the defaults are the published ones (Zhu et al. 2017).

    Args:
        ngf, ndf: filters of the generators' first layer and of the discriminators' first layer.
        n_blocks: residual blocks of each generator (9 for 256-px training crops).
        n_layers_d: stride-2 layers of the PatchGAN (3: 70x70 patches).
        lambda_cycle: weight of both cycle-consistency L1 losses (A->B->A and B->A->B).
        lambda_identity: identity L1 weight as a fraction of lambda_cycle (0 turns it off).
        pool_size: fakes kept for the discriminators (0: always the latest fakes).
        lr, beta1, beta2: Adam's, for both optimizers.
        gan_loss: ``least_squares`` (LSGAN, the published choice) or ``vanilla``.
    """

    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gan_loss: str = "least_squares"

    def __post_init__(self) -> None:
        for name in ("ngf", "ndf", "n_blocks", "n_layers_d", "pool_size"):
            value = getattr(self, name)
            minimum = 0 if name in ("n_blocks", "pool_size") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"cyclegan {name} must be an integer >= {minimum}, got {value!r}")
        for name in ("lambda_cycle", "lambda_identity", "lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"cyclegan {name} must be a number >= 0, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"cyclegan lr must be positive, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ConfigError(f"cyclegan {name} must be in [0, 1), got {value!r}")
        if self.gan_loss not in GAN_LOSSES:
            raise ConfigError(
                f'cyclegan gan_loss "{self.gan_loss}" is unknown; choose one of '
                f"{sorted(GAN_LOSSES)}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> CycleGANConfig:
        """A config from plain values (YAML's ``model:`` section); unknown keys are an error."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown cyclegan model settings {unknown}; known: {sorted(known)}")
        return cls(**values)


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

    def __init__(self, ngf: int, n_blocks: int) -> None:
        super().__init__()
        self.g_ab = ResnetGenerator(ngf, n_blocks)
        self.g_ba = ResnetGenerator(ngf, n_blocks)

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


class DiscriminatorPair(nn.Module):
    """Both discriminators in one module: scores for domain-A and domain-B batches."""

    def __init__(self, ndf: int, n_layers: int) -> None:
        super().__init__()
        self.d_a = PatchDiscriminator(ndf, n_layers)
        self.d_b = PatchDiscriminator(ndf, n_layers)

    def forward(
        self, images_a: torch.Tensor, images_b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.d_a(images_a), self.d_b(images_b)


def build_generator(model_config: Mapping[str, Any]) -> nn.Module:
    """The source->target generator for ``model_config`` (``CycleGANRecipe.model_config()``,
    as saved with the model), with untrained weights: load ``generator_state()`` into it.

    Keys that are not CycleGAN settings (e.g. ``load_size``, which inference reads) are ignored.
    """
    known = {f.name for f in fields(CycleGANConfig)}
    config = CycleGANConfig.from_dict({k: v for k, v in model_config.items() if k in known})
    return ResnetGenerator(config.ngf, config.n_blocks)


class CycleGANRecipe(GanRecipeBase):
    """Networks, losses, optimizers, LR schedules and image pools of one CycleGAN training run.

    Args:
        config: a ``CycleGANConfig`` or its plain-dict overrides.
        steps: training length (the LR reaches 0 there).
        decay_start: step where the LR starts its linear decay (default ``steps // 2``).
        device: where the networks live.
        seed: weight initialisation (the same on every rank).
        rank: this process's rank; the image pools draw from streams seeded by (seed, rank).
        wrap: applied to the generator pair and the discriminator pair for training (Ray Train's
            ``prepare_model``: DistributedDataParallel); identity by default.
        precision: ``bf16`` runs the networks under ``torch.autocast`` (losses stay float32).
        channels_last: keep networks and batches in channels-last memory format.
        compile: ``torch.compile`` each network in place (same module, same state_dict keys).
    """

    method: ClassVar[str] = "cyclegan"
    generators: GeneratorPair
    discriminators: DiscriminatorPair

    def __init__(
        self,
        config: CycleGANConfig | Mapping[str, Any] | None = None,
        *,
        steps: int,
        decay_start: int | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        rank: int = 0,
        wrap: Wrap | None = None,
        precision: Precision = "fp32",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        if not isinstance(config, CycleGANConfig):
            config = CycleGANConfig.from_dict(config)
        self.config = config
        self.gan_loss = gan_loss(config.gan_loss)

        self.generators = GeneratorPair(config.ngf, config.n_blocks)
        self.discriminators = DiscriminatorPair(config.ndf, config.n_layers_d)
        init_normal(self.generators, seed=seed_of(seed, 0))
        init_normal(self.discriminators, seed=seed_of(seed, 1))
        self._place_networks(
            self.generators,
            self.discriminators,
            device=device,
            precision=precision,
            channels_last=channels_last,
            compile=compile,
            wrap=wrap,
        )

        betas = (config.beta1, config.beta2)
        self.optimizer_g = torch.optim.Adam(self.generators.parameters(), config.lr, betas=betas)
        self.optimizer_d = torch.optim.Adam(
            self.discriminators.parameters(), config.lr, betas=betas
        )
        schedule = linear_decay(steps, steps // 2 if decay_start is None else decay_start)
        self.scheduler_g = LambdaLR(self.optimizer_g, schedule)
        self.scheduler_d = LambdaLR(self.optimizer_d, schedule)
        self.pool_a = ImagePool(config.pool_size, seed=seed_of(seed, rank, 2))
        self.pool_b = ImagePool(config.pool_size, seed=seed_of(seed, rank, 3))
        self.step = 0

    # -- the training step -------------------------------------------------------------------------
    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One generator step, one discriminator step, one LR-schedule step; the losses."""
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        fakes, losses_g = self.generator_step(real_a, real_b)
        losses_d = self.discriminator_step(real_a, real_b, fakes.fake_a, fakes.fake_b)
        self.scheduler_g.step()
        self.scheduler_d.step()
        self.step += 1
        losses = {**losses_g, **losses_d}
        values = torch.stack([losses[name] for name in LOSS_NAMES]).tolist()  # one device sync
        return dict(zip(LOSS_NAMES, values, strict=True))

    def generator_step(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[GeneratedImages, dict[str, torch.Tensor]]:
        """Update both generators with the discriminators fixed; the images made (detached) and
        the detached loss terms."""
        set_requires_grad(self.discriminators, False)
        with self._autocast():
            images = self.generators_train(real_a, real_b, self.config.lambda_identity > 0)
            # The unwrapped module: no DDP hooks, and with requires_grad off no parameter grads.
            scores_a, scores_b = self.discriminators(images.fake_a, images.fake_b)
        losses = self._generator_losses(real_a, real_b, images, scores_a, scores_b)
        self.optimizer_g.zero_grad(set_to_none=True)
        losses["g_total"].backward()
        self.optimizer_g.step()
        self.optimizer_g.zero_grad(set_to_none=True)  # no stale gradients between steps
        detached = GeneratedImages._make(None if t is None else t.detach() for t in images)
        return detached, {name: value.detach() for name, value in losses.items()}

    def discriminator_step(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        fake_a: torch.Tensor,
        fake_b: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Update both discriminators on real images and pooled fakes; the detached losses."""
        set_requires_grad(self.discriminators, True)
        fake_a = self._prepare(self.pool_a.query(fake_a.detach()))
        fake_b = self._prepare(self.pool_b.query(fake_b.detach()))
        with self._autocast():
            scores_a, scores_b = self.discriminators_train(
                torch.cat([real_a, fake_a]), torch.cat([real_b, fake_b])
            )
        losses = {
            "d_a": self._discriminator_loss(scores_a, real_a.shape[0]),
            "d_b": self._discriminator_loss(scores_b, real_b.shape[0]),
        }
        self.optimizer_d.zero_grad(set_to_none=True)
        (losses["d_a"] + losses["d_b"]).backward()
        self.optimizer_d.step()
        self.optimizer_d.zero_grad(set_to_none=True)
        return {name: value.detach() for name, value in losses.items()}

    @torch.no_grad()
    def evaluate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """Every loss term for this batch with the current networks, changing nothing (the
        discriminators score the current fakes, not pooled ones)."""
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        with self._autocast():
            images = self.generators(real_a, real_b, self.config.lambda_identity > 0)
            scores_a, scores_b = self.discriminators(
                torch.cat([real_a, images.fake_a]), torch.cat([real_b, images.fake_b])
            )
        n_a, n_b = real_a.shape[0], real_b.shape[0]
        losses = self._generator_losses(real_a, real_b, images, scores_a[n_a:], scores_b[n_b:])
        losses["d_a"] = self._discriminator_loss(scores_a, n_a)
        losses["d_b"] = self._discriminator_loss(scores_b, n_b)
        return {name: float(losses[name]) for name in LOSS_NAMES}

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

    def _discriminator_loss(self, scores: torch.Tensor, n_real: int) -> torch.Tensor:
        """Half the sum of the real and fake terms (slows D relative to G, as published)."""
        real, fake = scores[:n_real], scores[n_real:]
        return 0.5 * (self.gan_loss(real, True) + self.gan_loss(fake, False))

    # -- state -------------------------------------------------------------------------------------
    def generator_state(self) -> dict[str, torch.Tensor]:
        """The source->target generator's weights, on the CPU, for inference."""
        return {k: v.detach().cpu().clone() for k, v in self.generators.g_ab.state_dict().items()}

    def _extra_state(self) -> dict[str, Any]:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)
