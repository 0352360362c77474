"""What every GAN recipe (``CycleGANRecipe``, ``UNITRecipe``, ``CUTRecipe``) shares: the
constructor's steps, the training step, the generator and discriminator step skeletons,
evaluate, state and DDP wrapping; where and how the networks run (device, precision, memory
format, compilation, CUDA graphs) is ``harmonize.gan.placement``.

A recipe trains two players, each one module: the generators (all of them, one forward makes
every image of a generator step) and a ``DiscriminatorPair``; one Adam optimizer and one
``LambdaLR`` schedule each. A method supplies only what differs, through small hooks:

- ``_build_networks``, ``_init_weights``, ``_schedule``, ``_adam_options``,
  ``_init_random_state``: what the constructor builds;
- ``_generator_inputs``: what the generators get besides the two batches (CycleGAN: whether to
  make identity images; UNIT: the latent noise; CUT: the sampled patch positions), so which
  images a generator step makes;
- ``_generator_losses``, ``_discriminator_loss``: the loss terms (the latter by default the
  published CycleGAN / CUT form: half the sum of the real and fake terms);
- ``_discriminator_fake``: which fakes a discriminator learns from (the latest by default;
  CycleGAN: drawn from its image pools);
- ``_inference_generator``, ``_extra_state``, ``_load_extra_state``: what is saved.

DDP safety by construction: each optimizer's parameters see exactly one forward and one backward
per step through their (possibly DDP-) wrapped module (``generators_train``,
``discriminators_train``). During the generator step the discriminators are called through the
*unwrapped* module with ``requires_grad`` off: gradients flow through them into the fakes, but no
discriminator parameter gets a gradient and DDP's discriminator reducer is not involved.

A one-sided method (CUT) translates only A -> B: its step images' ``fake_a`` is None, its pair
has no ``d_a``, and it reports no ``d_a`` loss; everything else is the same template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from harmonize.errors import ConfigError
from harmonize.gan.layers import DiscriminatorPair, set_requires_grad
from harmonize.gan.losses import gan_loss
from harmonize.gan.placement import first_compiled_call, place_networks

Precision = Literal["bf16", "fp32"]
Wrap = Callable[[nn.Module], nn.Module]


class StepImages(Protocol):
    """What the template needs of a generator step's images (a NamedTuple of tensors or None):
    the translations the discriminators judge (``fake_a`` None: a one-sided method)."""

    @property
    def fake_a(self) -> torch.Tensor | None: ...
    @property
    def fake_b(self) -> torch.Tensor: ...


ImagesT = TypeVar("ImagesT", bound=StepImages)
# A discriminator's logits for one batch: one map (PatchGAN) or one map per scale (multi-scale).
ScoresT = TypeVar("ScoresT", torch.Tensor, list[torch.Tensor])


def seed_of(*entropy: int) -> int:
    """One 32-bit seed from several integers (e.g. (seed, rank, stream))."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def split_scores(scores: ScoresT, n: int) -> tuple[ScoresT, ScoresT]:
    """The scores of the first ``n`` images of a batch and of the rest (per scale for a list)."""
    if isinstance(scores, list):
        return [s[:n] for s in scores], [s[n:] for s in scores]
    return scores[:n], scores[n:]


def _detached(images: ImagesT, copy: bool = False) -> ImagesT:
    """A generator step's images with every tensor detached (and copied with ``copy``)."""
    named: Any = images  # a NamedTuple of tensors or None (a Protocol cannot say so to mypy)
    return named._make(
        None if t is None else t.detach().clone() if copy else t.detach() for t in named
    )


class GanRecipeBase(Generic[ImagesT, ScoresT]):
    """Networks, losses, optimizers and LR schedules of one GAN training run.

    Args:
        config: a config of the method's ``config_class`` or its plain-dict overrides.
        steps: training length (the method's schedule is fitted to it).
        decay_start: step where a decaying schedule starts (the method may ignore it).
        device: where the networks live.
        seed: weight initialisation (the same on every rank).
        rank: this process's rank; the method's random streams are seeded by (seed, rank).
        wrap: applied to the generators and the discriminator pair for training (Ray Train's
            ``prepare_model``: DistributedDataParallel); identity by default.
        precision: ``bf16`` runs the networks under ``torch.autocast`` (losses stay float32).
        channels_last: keep networks and batches in channels-last memory format.
        compile: ``torch.compile`` each network in place (same module, same state_dict keys).
        cuda_graphs: compile in ``reduce-overhead`` mode, which replays each network's forward
            and backward as CUDA graphs (needs ``compile`` and a CUDA device; one process: a
            DDP-wrapped run should leave it off). See ``train_step`` for what it changes.
        fused_optimizer: Adam's fused implementation (one kernel per parameter group; the
            same update up to rounding).
    """

    method: ClassVar[str]
    config_class: ClassVar[type[Any]]  # frozen, with from_dict and harmonize.gan.config's settings
    loss_names: ClassVar[tuple[str, ...]]  # every loss term train_step reports, in order
    config: Any
    generators: nn.Module
    discriminators: DiscriminatorPair

    def __init__(
        self,
        config: Any = None,
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
        cuda_graphs: bool = False,
        fused_optimizer: bool = False,
    ) -> None:
        if not isinstance(config, self.config_class):
            config = self.config_class.from_dict(config)
        self.config = config
        self.gan_loss = gan_loss(config.gan_loss)

        self.generators, self.discriminators = self._build_networks()
        self._init_weights(self.generators, seed_of(seed, 0))
        self._init_weights(self.discriminators, seed_of(seed, 1))
        self.placement = place_networks(
            self.generators,
            self.discriminators,
            device=device,
            precision=precision,
            channels_last=channels_last,
            compile=compile,
            cuda_graphs=cuda_graphs,
        )
        self.device, self.cuda_graphs = self.placement.device, cuda_graphs
        # Whether the networks run compiled; the first step shows whether compiling works here.
        self._unproven_compile = self.compiled = compile
        wrap = wrap or (lambda module: module)  # the training views (DDP); the same without
        self.generators_train = wrap(self.generators)
        self.discriminators_train = wrap(self.discriminators)

        betas = (config.beta1, config.beta2)
        options = {**self._adam_options(), **({"fused": True} if fused_optimizer else {})}
        self.optimizer_g = torch.optim.Adam(
            self.generators.parameters(), config.lr, betas=betas, **options
        )
        self.optimizer_d = torch.optim.Adam(
            self.discriminators.parameters(), config.lr, betas=betas, **options
        )
        schedule = self._schedule(steps, decay_start)
        self.scheduler_g = LambdaLR(self.optimizer_g, schedule)
        self.scheduler_d = LambdaLR(self.optimizer_d, schedule)
        self._init_random_state(seed, rank)
        self.step = 0

    # -- the training step -------------------------------------------------------------------------
    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One generator step, one discriminator step, one LR-schedule step; the losses.

        With ``cuda_graphs`` a network's outputs live in memory its next replay overwrites, so
        the step marks its start for torch's CUDA-graph trees and nothing a network made is read
        after its next replay: the losses are computed first, and the fakes handed on
        (``generator_step``) and kept by the image pools (``ImagePool.query``) are copies.
        """
        if self._unproven_compile:  # compiling can fail only now: then on without it
            self._unproven_compile = False
            step = lambda: self.train_step(real_a, real_b)  # noqa: E731
            result, compiled = first_compiled_call(
                step, (self.generators, self.discriminators), self
            )
            self.compiled, self.cuda_graphs = compiled, self.cuda_graphs and compiled
            return result
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        images, losses_g = self.generator_step(real_a, real_b)
        losses_d = self.discriminator_step(real_a, real_b, images.fake_a, images.fake_b)
        self.scheduler_g.step()
        self.scheduler_d.step()
        self.step += 1
        losses = {**losses_g, **losses_d}
        values = torch.stack([losses[name] for name in self.loss_names]).tolist()  # one sync
        return dict(zip(self.loss_names, values, strict=True))

    def generator_step(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[ImagesT, dict[str, torch.Tensor]]:
        """Update the generators with the discriminators fixed; the images made (detached;
        copies with ``cuda_graphs``, so that a later replay cannot overwrite them) and the
        detached loss terms."""
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        inputs = self._generator_inputs(real_a, real_b)
        set_requires_grad(self.discriminators, False)
        with self._autocast():
            images: ImagesT = self.generators_train(real_a, real_b, *inputs)
            # The unwrapped module: no DDP hooks, and with requires_grad off no parameter grads.
            scores_a, scores_b = self.discriminators(images.fake_a, images.fake_b)
        losses = self._generator_losses(real_a, real_b, images, scores_a, scores_b)
        self.optimizer_g.zero_grad(set_to_none=True)
        losses["g_total"].backward()
        self.optimizer_g.step()
        self.optimizer_g.zero_grad(set_to_none=True)  # no stale gradients between steps
        kept = _detached(images, copy=self.cuda_graphs)
        return kept, {name: value.detach() for name, value in losses.items()}

    def discriminator_step(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        fake_a: torch.Tensor | None,
        fake_b: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Update the discriminators on real images and the fakes ``_discriminator_fake`` picks
        from the given ones; the detached losses (no ``d_a`` when ``fake_a`` is None)."""
        set_requires_grad(self.discriminators, True)
        batch_a = None if fake_a is None else self._real_then_fake("a", real_a, fake_a)
        batch_b = self._real_then_fake("b", real_b, fake_b)
        with self._autocast():
            scores_a, scores_b = self.discriminators_train(batch_a, batch_b)
        losses = self._discriminator_losses(scores_a, scores_b, real_a.shape[0], real_b.shape[0])
        total = losses["d_b"] if scores_a is None else losses["d_a"] + losses["d_b"]
        self.optimizer_d.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer_d.step()
        self.optimizer_d.zero_grad(set_to_none=True)
        return {name: value.detach() for name, value in losses.items()}

    def _real_then_fake(
        self, domain: Literal["a", "b"], real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor:
        """One discriminator's batch: the real images, then the fakes it learns from."""
        fake = self._discriminator_fake(domain, fake.detach())
        return torch.cat([self._prepare(real), self._prepare(fake)])

    def _discriminator_losses(
        self, scores_a: Any, scores_b: Any, n_a: int, n_b: int
    ) -> dict[str, torch.Tensor]:
        """``d_a`` (where domain A is judged) and ``d_b`` from scores of the real images (the
        first ``n_a``, ``n_b``) followed by fakes."""
        losses = {}
        if scores_a is not None:
            losses["d_a"] = self._discriminator_loss(*split_scores(scores_a, n_a))
        losses["d_b"] = self._discriminator_loss(*split_scores(scores_b, n_b))
        return losses

    @torch.no_grad()
    def _evaluate(
        self, real_a: torch.Tensor, real_b: torch.Tensor, *inputs: Any
    ) -> dict[str, float]:
        """Every loss term for this batch with the current networks, the generators run on
        ``inputs`` (as ``_generator_inputs`` would give them), changing nothing: the
        discriminators score the current fakes."""
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        n_a, n_b = real_a.shape[0], real_b.shape[0]
        with self._autocast():
            images = self.generators(real_a, real_b, *inputs)
            fake_a = images.fake_a
            scores_a, scores_b = self.discriminators(
                None if fake_a is None else torch.cat([real_a, fake_a]),
                torch.cat([real_b, images.fake_b]),
            )
        fake_scores_a: Any = None if scores_a is None else split_scores(scores_a, n_a)[1]
        fake_scores_b = split_scores(scores_b, n_b)[1]
        losses = self._generator_losses(real_a, real_b, images, fake_scores_a, fake_scores_b)
        losses.update(self._discriminator_losses(scores_a, scores_b, n_a, n_b))
        return {name: float(losses[name]) for name in self.loss_names}

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        return self.placement.prepare(images)

    def _autocast(self) -> torch.autocast:
        return self.placement.autocast()

    # -- the method's hooks ------------------------------------------------------------------------
    def _build_networks(self) -> tuple[nn.Module, DiscriminatorPair]:
        """The generators and the discriminator pair for ``self.config``, untrained."""
        raise NotImplementedError

    def _init_weights(self, module: nn.Module, seed: int) -> None:
        """Initialise ``module``'s weights in place from ``seed``."""
        raise NotImplementedError

    def _schedule(self, steps: int, decay_start: int | None) -> Callable[[int], float]:
        """The learning-rate factor per step, for ``LambdaLR``."""
        raise NotImplementedError

    def _adam_options(self) -> dict[str, Any]:
        """Adam's keyword arguments besides lr and betas (for both optimizers)."""
        return {}

    def _init_random_state(self, seed: int, rank: int) -> None:
        """The method's own random streams (image pools, sampling noise), seeded by (seed, rank)."""

    def _generator_inputs(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[Any, ...]:
        """What the generators get after the two batches in a generator step."""
        return ()

    def _generator_losses(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        images: ImagesT,
        scores_fake_a: ScoresT,
        scores_fake_b: ScoresT,
    ) -> dict[str, torch.Tensor]:
        """The generator step's loss terms, ``g_total`` (what is minimised) included
        (``scores_fake_a`` is None for a one-sided method)."""
        raise NotImplementedError

    def _discriminator_loss(self, scores_real: ScoresT, scores_fake: ScoresT) -> torch.Tensor:
        """One discriminator's loss from its scores of real and of fake images. By default the
        published CycleGAN / CUT form for one score map: half the sum of the real and fake terms
        (slows D relative to G); UNIT, whose terms differ, overrides it."""
        if isinstance(scores_real, list):  # one map per scale: the method sums them its own way
            raise NotImplementedError(f"{self.method} needs its own _discriminator_loss")
        real, fake = self.gan_loss(scores_real, True), self.gan_loss(scores_fake, False)
        return 0.5 * (real + fake)

    def _discriminator_fake(self, domain: Literal["a", "b"], fake: torch.Tensor) -> torch.Tensor:
        """The fakes domain ``domain``'s discriminator learns from, given the latest (detached)
        ones."""
        return fake

    def _inference_generator(self) -> nn.Module:
        """The source->target network kept for inference (a view on ``self.generators``)."""
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        return float(self.optimizer_g.param_groups[0]["lr"])

    def model_config(self) -> dict[str, Any]:
        """The config as plain values: the method's ``build_generator`` rebuilds the
        source->target generator from it."""
        return asdict(self.config)

    def generator_state(self) -> dict[str, torch.Tensor]:
        """The source->target generator's weights, on the CPU, for inference."""
        state = self._inference_generator().state_dict()
        return {k: v.detach().cpu().clone() for k, v in state.items()}

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

    def rank_state(self) -> dict[str, Any]:
        """The part of ``state_dict()`` that is this rank's own (image pools, noise streams:
        seeded by (seed, rank), so every rank of a distributed run has different ones)."""
        return self._extra_state()

    def load_rank_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``rank_state`` saved (over what ``load_state_dict`` restored)."""
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        """The recipe's own random state beyond networks, optimizers and schedules."""
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``_extra_state`` saved."""
