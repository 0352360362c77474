"""UNIT (Liu, Breuel and Kautz 2017) for unpaired site-to-site harmonization: config, networks,
recipe.

UNIT assumes a shared latent space: an image of site A (source) and its counterpart of site B
(target) map to the same code z. Each domain has a VAE, an encoder ``E`` and a decoder ``G``;
the encoders' last residual blocks are ONE module (``enc_shared``) used by both domains, and so
are the decoders' first residual blocks (``dec_shared``). The encoder outputs the mean ``mu`` of
a unit-variance Gaussian, so the KL term against N(0, I) reduces to the mean of ``mu ** 2`` and
sampling is ``z = mu + N(0, 1)`` (reparameterised). Translation A->B is ``G_b(E_a(x_a))``; at
inference it uses the mean (no sampling), so it is deterministic.

One training step, as in the paper: a generator step (encoders and decoders) on
``lambda_recon * L1(G_a(z_a), x_a) + lambda_kl * KL(mu_a)`` per domain, the least-squares GAN
loss of the translations under multi-scale discriminators (weight ``lambda_gan``), and the cycle
terms ``lambda_cycle * L1(G_a(E_b(G_b(z_a))), x_a) + lambda_cycle_kl * KL(E_b(G_b(z_a)))`` per
domain; then a discriminator step on real images and the (detached) latest translations.

DDP safety, as in ``cyclegan.py``: all encoders and decoders live in one module
(``UNITGenerators``, one forward makes every image of a generator step) and both multi-scale
discriminators in another (``DiscriminatorPair``), so each optimizer's parameters see exactly one
forward and one backward per step through their (possibly DDP-) wrapped module. The shared blocks
run several times in that forward; their gradients from both domains add up before the one
backward completes, which DDP allows. During the generator step the discriminators are called
through the *unwrapped* module with ``requires_grad`` off: no discriminator parameter gets a
gradient and DDP's discriminator reducer is not involved. Sampling noise is drawn by the recipe
from its own seeded stream and passed in, so a resumed run draws the same noise.

Example::

    recipe = UNITRecipe({"ngf": 8, "n_blocks": 2, "n_layers_d": 2}, steps=1000, seed=0)
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

from harmonize.errors import ConfigError, ModelError
from harmonize.methods.blocks import (
    GAN_LOSSES,
    ConvBlock,
    GanRecipeBase,
    ModuleT,
    ResidualBlock,
    gan_loss,
    seed_of,
    set_requires_grad,
)

Precision = Literal["bf16", "fp32"]
Wrap = Callable[[nn.Module], nn.Module]
Domain = Literal["a", "b"]

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


@dataclass(frozen=True)
class UNITConfig:
    """The UNIT recipe; the defaults are the published ones (the paper and its configuration).

    Args:
        ngf: filters of the encoders' first layer (the latent has ``4 * ngf`` channels at a
            quarter of the image size: two stride-2 stages).
        ndf: filters of each discriminator's first layer.
        n_blocks: residual blocks of each encoder and each decoder, shared ones included.
        n_shared_blocks: how many of them are shared between the domains (the encoders' last,
            the decoders' first); 1 .. n_blocks.
        n_layers_d: stride-2 4x4 convolutions of each discriminator scale.
        n_scales_d: image scales each discriminator judges (halved by 3x3 average pooling).
        lambda_gan, lambda_recon, lambda_kl, lambda_cycle, lambda_cycle_kl: loss weights.
        lr, beta1, beta2, weight_decay: Adam's, for both optimizers.
        lr_step_size: steps between learning-rate multiplications by ``lr_gamma``; None: a tenth
            of the training steps (the published 100 000 of 1 000 000 iterations).
        lr_gamma: the step decay's factor.
        gan_loss: ``least_squares`` (LSGAN, the published choice) or ``vanilla``.
    """

    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 4
    n_shared_blocks: int = 1
    n_layers_d: int = 4
    n_scales_d: int = 3
    lambda_gan: float = 1.0
    lambda_recon: float = 10.0
    lambda_kl: float = 0.01
    lambda_cycle: float = 10.0
    lambda_cycle_kl: float = 0.01
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    lr_step_size: int | None = None
    lr_gamma: float = 0.5
    gan_loss: str = "least_squares"

    def __post_init__(self) -> None:
        for name in ("ngf", "ndf", "n_blocks", "n_shared_blocks", "n_layers_d", "n_scales_d"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"unit {name} must be an integer >= 1, got {value!r}")
        if self.n_shared_blocks > self.n_blocks:
            raise ConfigError(
                f"unit n_shared_blocks ({self.n_shared_blocks}) must be at most n_blocks "
                f"({self.n_blocks})"
            )
        weights = ("lambda_gan", "lambda_recon", "lambda_kl", "lambda_cycle", "lambda_cycle_kl")
        for name in (*weights, "lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"unit {name} must be a number >= 0, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"unit lr must be positive, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ConfigError(f"unit {name} must be in [0, 1), got {value!r}")
        step_size = self.lr_step_size
        if step_size is not None and (
            isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1
        ):
            raise ConfigError(
                f"unit lr_step_size must be null or an integer >= 1, got {step_size!r}"
            )
        gamma = self.lr_gamma
        if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 < gamma <= 1:
            raise ConfigError(f"unit lr_gamma must be in (0, 1], got {gamma!r}")
        if self.gan_loss not in GAN_LOSSES:
            raise ConfigError(
                f'unit gan_loss "{self.gan_loss}" is unknown; choose one of {sorted(GAN_LOSSES)}'
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> UNITConfig:
        """A config from plain values (YAML's ``model:`` section); unknown keys are an error."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown unit model settings {unknown}; known: {sorted(known)}")
        return cls(**values)


# -- networks --------------------------------------------------------------------------------------
class PrivateEncoder(nn.Sequential):
    """A domain's own encoder layers: ``c7s1-ngf, d(2 ngf), d(4 ngf)`` (4x4 stride-2 convs),
    then ``n_blocks`` residual blocks; instance norm and reflect padding throughout."""

    def __init__(self, ngf: int, n_blocks: int, channels: int = 1) -> None:
        super().__init__(
            ConvBlock(channels, ngf, 7, padding=3, padding_mode="reflect"),
            ConvBlock(ngf, 2 * ngf, 4, stride=2, padding=1, padding_mode="reflect"),
            ConvBlock(2 * ngf, 4 * ngf, 4, stride=2, padding=1, padding_mode="reflect"),
            *(ResidualBlock(4 * ngf) for _ in range(n_blocks)),
        )


class SharedBlocks(nn.Sequential):
    """Residual blocks on the latent code that both domains run through (one set of weights)."""

    def __init__(self, ngf: int, n_blocks: int) -> None:
        super().__init__(*(ResidualBlock(4 * ngf) for _ in range(n_blocks)))


class PrivateDecoder(nn.Sequential):
    """A domain's own decoder layers: ``n_blocks`` residual blocks, then twice (nearest 2x
    upsampling, 5x5 conv halving the channels, instance norm, ReLU), then ``c7s1-1, tanh``.
    Upsampling + convolution instead of transposed convolutions: no checkerboard, and reflect
    padding everywhere (fully convolutional, so tiled inference works)."""

    def __init__(self, ngf: int, n_blocks: int, channels: int = 1) -> None:
        layers: list[nn.Module] = [ResidualBlock(4 * ngf) for _ in range(n_blocks)]
        for width in (4 * ngf, 2 * ngf):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                ConvBlock(width, width // 2, 5, padding=2, padding_mode="reflect"),
            ]
        layers.append(
            ConvBlock(
                ngf, channels, 7, padding=3, padding_mode="reflect", norm=False, activation="tanh"
            )
        )
        super().__init__(*layers)


def _check_size(x: torch.Tensor) -> None:
    height, width = x.shape[-2:]
    if height % 4 or width % 4:
        raise ModelError(
            f"the UNIT generator needs height and width divisible by 4, got {height}x{width}; "
            "pad with harmonize.imaging.preprocess.pad_to_multiple(image, 4)"
        )


class UNITTranslator(nn.Module):
    """Source->target at inference: ``G_b(E_a(x))`` through the latent mean (deterministic).

    Image (N, 1, H, W) in [-1, 1] -> same shape in [-1, 1]; H and W must be divisible by 4.
    Built on modules it is given: ``UNITGenerators.translator()`` shares the trained ones.
    """

    def __init__(
        self,
        enc_a: PrivateEncoder,
        enc_shared: SharedBlocks,
        dec_shared: SharedBlocks,
        dec_b: PrivateDecoder,
    ) -> None:
        super().__init__()
        self.enc_a = enc_a
        self.enc_shared = enc_shared
        self.dec_shared = dec_shared
        self.dec_b = dec_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x)
        return self.dec_b(self.dec_shared(self.enc_shared(self.enc_a(x))))


class UNITImages(NamedTuple):
    """Every latent and image of one generator step (``ab``: from A, translated to B)."""

    mu_a: torch.Tensor  # E_a(real_a)
    mu_b: torch.Tensor  # E_b(real_b)
    rec_a: torch.Tensor  # G_a(z_a), should be real_a
    rec_b: torch.Tensor  # G_b(z_b), should be real_b
    fake_a: torch.Tensor  # G_a(z_b): B translated to A
    fake_b: torch.Tensor  # G_b(z_a): A translated to B
    mu_ab: torch.Tensor  # E_b(fake_b): A's code, recovered from its translation
    mu_ba: torch.Tensor  # E_a(fake_a)
    cyc_a: torch.Tensor  # G_a(sample(mu_ab)), should be real_a
    cyc_b: torch.Tensor  # G_b(sample(mu_ba)), should be real_b


def _sample(mu: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """The reparameterised unit-variance sample ``mu + noise`` (the mean when no noise)."""
    return mu if noise is None else mu + noise


class UNITGenerators(nn.Module):
    """Both VAEs in one module, the shared blocks registered once (``enc_shared``,
    ``dec_shared``): one forward makes every image of a generator step."""

    def __init__(self, ngf: int, n_blocks: int, n_shared_blocks: int) -> None:
        super().__init__()
        private = n_blocks - n_shared_blocks
        self.enc_a = PrivateEncoder(ngf, private)
        self.enc_b = PrivateEncoder(ngf, private)
        self.enc_shared = SharedBlocks(ngf, n_shared_blocks)
        self.dec_shared = SharedBlocks(ngf, n_shared_blocks)
        self.dec_a = PrivateDecoder(ngf, private)
        self.dec_b = PrivateDecoder(ngf, private)

    def encoder(self, domain: Domain) -> nn.Sequential:
        """The domain's encoder path (a view on the registered modules): image -> latent mean."""
        return nn.Sequential(self.enc_a if domain == "a" else self.enc_b, self.enc_shared)

    def decoder(self, domain: Domain) -> nn.Sequential:
        """The domain's decoder path (a view on the registered modules): latent -> image."""
        return nn.Sequential(self.dec_shared, self.dec_a if domain == "a" else self.dec_b)

    def translator(self) -> UNITTranslator:
        """The A->B translator on these very modules (what ``generator_state`` saves)."""
        return UNITTranslator(self.enc_a, self.enc_shared, self.dec_shared, self.dec_b)

    def forward(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        noise_a: torch.Tensor | None = None,
        noise_b: torch.Tensor | None = None,
    ) -> UNITImages:
        """All images of a step. ``noise_a`` (2, N_a, C, H/4, W/4) is added to A's code and to
        its translation's code (and ``noise_b`` likewise); None uses the means."""
        _check_size(real_a)
        _check_size(real_b)
        n_a, n_b = real_a.shape[0], real_b.shape[0]
        noise_a0, noise_a1 = (None, None) if noise_a is None else noise_a.unbind(0)
        noise_b0, noise_b1 = (None, None) if noise_b is None else noise_b.unbind(0)
        mu_a = self.enc_shared(self.enc_a(real_a))
        mu_b = self.enc_shared(self.enc_b(real_b))
        z_a, z_b = _sample(mu_a, noise_a0), _sample(mu_b, noise_b0)
        # Instance norm is per image, so decoding [z_a; z_b] at once equals decoding each.
        rec_a, fake_a = self.dec_a(self.dec_shared(torch.cat([z_a, z_b]))).split([n_a, n_b])
        rec_b, fake_b = self.dec_b(self.dec_shared(torch.cat([z_b, z_a]))).split([n_b, n_a])
        mu_ab = self.enc_shared(self.enc_b(fake_b))
        mu_ba = self.enc_shared(self.enc_a(fake_a))
        cyc_a = self.dec_a(self.dec_shared(_sample(mu_ab, noise_a1)))
        cyc_b = self.dec_b(self.dec_shared(_sample(mu_ba, noise_b1)))
        return UNITImages(mu_a, mu_b, rec_a, rec_b, fake_a, fake_b, mu_ab, mu_ba, cyc_a, cyc_b)


class ScaleDiscriminator(nn.Sequential):
    """One scale: ``n_layers`` 4x4 stride-2 convs (ndf, 2 ndf, ... capped at 8 ndf), leaky ReLU
    0.2, no norm, then a 1x1 conv to one logit per patch."""

    def __init__(self, ndf: int, n_layers: int, channels: int = 1) -> None:
        layers: list[nn.Module] = []
        width = channels
        for index in range(n_layers):
            out = ndf * min(2**index, 8)
            layers.append(ConvBlock(width, out, 4, 2, 1, norm=False, activation="leaky_relu"))
            width = out
        layers.append(nn.Conv2d(width, 1, 1))
        super().__init__(*layers)


class MultiScaleDiscriminator(nn.Module):
    """``n_scales`` discriminators, each on the image average-pooled (3x3, stride 2) once more
    than the last; a list of logit maps, finest scale first."""

    def __init__(self, ndf: int, n_layers: int, n_scales: int, channels: int = 1) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.scales = nn.ModuleList(
            ScaleDiscriminator(ndf, n_layers, channels) for _ in range(n_scales)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        smallest = min(x.shape[-2:]) // 2 ** (len(self.scales) - 1)
        if smallest < 2**self.n_layers:
            raise ModelError(
                f"images of {x.shape[-2]}x{x.shape[-1]} px are too small for {len(self.scales)} "
                f"discriminator scales of {self.n_layers} stride-2 layers; use crops of at least "
                f"{2 ** (self.n_layers + len(self.scales) - 1)} px or lower n_scales_d/n_layers_d"
            )
        scores = []
        for index, scale in enumerate(self.scales):
            if index:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            scores.append(scale(x))
        return scores


class DiscriminatorPair(nn.Module):
    """Both discriminators in one module: multi-scale scores for domain-A and domain-B batches."""

    def __init__(self, ndf: int, n_layers: int, n_scales: int) -> None:
        super().__init__()
        self.d_a = MultiScaleDiscriminator(ndf, n_layers, n_scales)
        self.d_b = MultiScaleDiscriminator(ndf, n_layers, n_scales)

    def forward(
        self, images_a: torch.Tensor, images_b: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.d_a(images_a), self.d_b(images_b)


def build_generator(model_config: Mapping[str, Any]) -> nn.Module:
    """The source->target translator for ``model_config`` (``UNITRecipe.model_config()``, as
    saved with the model), with untrained weights: load ``generator_state()`` into it.

    Keys that are not UNIT settings (e.g. ``load_size``, which inference reads) are ignored.
    """
    known = {f.name for f in fields(UNITConfig)}
    config = UNITConfig.from_dict({k: v for k, v in model_config.items() if k in known})
    private = config.n_blocks - config.n_shared_blocks
    return UNITTranslator(
        PrivateEncoder(config.ngf, private),
        SharedBlocks(config.ngf, config.n_shared_blocks),
        SharedBlocks(config.ngf, config.n_shared_blocks),
        PrivateDecoder(config.ngf, private),
    )


def init_kaiming(module: ModuleT, seed: int = 0) -> ModuleT:
    """He-normal (fan-in) convolution weights and zero biases, in place, from a private generator
    seeded by ``seed`` (the published UNIT init; the global RNG is not touched). Returns it."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                weight = torch.empty(layer.weight.shape)
                nn.init.kaiming_normal_(weight, a=0.0, mode="fan_in", generator=generator)
                layer.weight.copy_(weight)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


def step_decay(step_size: int, gamma: float) -> Callable[[int], float]:
    """The LR factor per step: ``gamma ** (step // step_size)`` (for ``LambdaLR``; a plain
    function, so the scheduler's state_dict holds only its step count)."""

    def factor(step: int) -> float:
        return float(gamma ** (step // step_size))

    return factor


def kl_unit_variance(mu: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, I) || N(0, I)) up to the constant factor: the mean of ``mu ** 2``."""
    return mu.float().pow(2).mean()


class UNITRecipe(GanRecipeBase):
    """Networks, losses, optimizers, LR schedules and the sampling stream of one UNIT run.

    Args:
        config: a ``UNITConfig`` or its plain-dict overrides.
        steps: training length (sets the default LR step size: ``steps // 10``).
        decay_start: accepted for the training loop's interface and unused: UNIT's published
            schedule is a step decay from the start (``lr_step_size``, ``lr_gamma``).
        device: where the networks live.
        seed: weight initialisation (the same on every rank).
        rank: this process's rank; the latent noise is drawn from a stream seeded by (seed, rank).
        wrap: applied to the generators and the discriminator pair for training (Ray Train's
            ``prepare_model``: DistributedDataParallel); identity by default.
        precision: ``bf16`` runs the networks under ``torch.autocast`` (losses stay float32).
        channels_last: keep networks and batches in channels-last memory format.
        compile: ``torch.compile`` each network in place (same module, same state_dict keys).
    """

    method: ClassVar[str] = "unit"
    generators: UNITGenerators
    discriminators: DiscriminatorPair

    def __init__(
        self,
        config: UNITConfig | Mapping[str, Any] | None = None,
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
        if not isinstance(config, UNITConfig):
            config = UNITConfig.from_dict(config)
        del decay_start  # see the docstring
        self.config = config
        self.gan_loss = gan_loss(config.gan_loss)

        self.generators = UNITGenerators(config.ngf, config.n_blocks, config.n_shared_blocks)
        self.discriminators = DiscriminatorPair(config.ndf, config.n_layers_d, config.n_scales_d)
        init_kaiming(self.generators, seed=seed_of(seed, 0))
        init_kaiming(self.discriminators, seed=seed_of(seed, 1))
        self._place_networks(
            self.generators,
            self.discriminators,
            device=device,
            precision=precision,
            channels_last=channels_last,
            compile=compile,
            wrap=wrap,
        )

        betas, decay = (config.beta1, config.beta2), config.weight_decay
        self.optimizer_g = torch.optim.Adam(
            self.generators.parameters(), config.lr, betas=betas, weight_decay=decay
        )
        self.optimizer_d = torch.optim.Adam(
            self.discriminators.parameters(), config.lr, betas=betas, weight_decay=decay
        )
        step_size = config.lr_step_size or max(1, steps // 10)
        schedule = step_decay(step_size, config.lr_gamma)
        self.scheduler_g = LambdaLR(self.optimizer_g, schedule)
        self.scheduler_d = LambdaLR(self.optimizer_d, schedule)
        self.noise = torch.Generator(self.device).manual_seed(seed_of(seed, rank, 2))
        self.step = 0

    # -- the training step -------------------------------------------------------------------------
    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One generator step, one discriminator step, one LR-schedule step; the losses."""
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        images, losses_g = self.generator_step(real_a, real_b)
        losses_d = self.discriminator_step(real_a, real_b, images.fake_a, images.fake_b)
        self.scheduler_g.step()
        self.scheduler_d.step()
        self.step += 1
        losses = {**losses_g, **losses_d}
        values = torch.stack([losses[name] for name in LOSS_NAMES]).tolist()  # one device sync
        return dict(zip(LOSS_NAMES, values, strict=True))

    def generator_step(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[UNITImages, dict[str, torch.Tensor]]:
        """Update both VAEs with the discriminators fixed; the images made (detached) and the
        detached loss terms."""
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        noise_a, noise_b = self._noise(real_a, self.noise), self._noise(real_b, self.noise)
        set_requires_grad(self.discriminators, False)
        with self._autocast():
            images = self.generators_train(real_a, real_b, noise_a, noise_b)
            # The unwrapped module: no DDP hooks, and with requires_grad off no parameter grads.
            scores_a, scores_b = self.discriminators(images.fake_a, images.fake_b)
        losses = self._generator_losses(real_a, real_b, images, scores_a, scores_b)
        self.optimizer_g.zero_grad(set_to_none=True)
        losses["g_total"].backward()
        self.optimizer_g.step()
        self.optimizer_g.zero_grad(set_to_none=True)  # no stale gradients between steps
        detached = UNITImages._make(t.detach() for t in images)
        return detached, {name: value.detach() for name, value in losses.items()}

    def discriminator_step(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        fake_a: torch.Tensor,
        fake_b: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Update both discriminators on real images and the given translations; the detached
        losses."""
        set_requires_grad(self.discriminators, True)
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        fake_a, fake_b = self._prepare(fake_a.detach()), self._prepare(fake_b.detach())
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
    def evaluate(
        self, real_a: torch.Tensor, real_b: torch.Tensor, noise_seed: int | None = 0
    ) -> dict[str, float]:
        """Every loss term for this batch with the current networks, changing nothing: the
        latent noise comes from a fresh stream seeded by ``noise_seed`` (None: the means), so
        two calls with the same seed see the same samples."""
        real_a, real_b = self._prepare(real_a), self._prepare(real_b)
        noise_a = noise_b = None
        if noise_seed is not None:
            stream = torch.Generator(self.device).manual_seed(noise_seed)
            noise_a, noise_b = self._noise(real_a, stream), self._noise(real_b, stream)
        with self._autocast():
            images = self.generators(real_a, real_b, noise_a, noise_b)
            scores_a, scores_b = self.discriminators(
                torch.cat([real_a, images.fake_a]), torch.cat([real_b, images.fake_b])
            )
        n_a, n_b = real_a.shape[0], real_b.shape[0]
        fake_scores_a = [s[n_a:] for s in scores_a]
        fake_scores_b = [s[n_b:] for s in scores_b]
        losses = self._generator_losses(real_a, real_b, images, fake_scores_a, fake_scores_b)
        losses["d_a"] = self._discriminator_loss(scores_a, n_a)
        losses["d_b"] = self._discriminator_loss(scores_b, n_b)
        return {name: float(losses[name]) for name in LOSS_NAMES}

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

    def _discriminator_loss(self, scores: list[torch.Tensor], n_real: int) -> torch.Tensor:
        """``lambda_gan`` times the real and fake terms, summed over scales."""
        real = self._gan_loss([s[:n_real] for s in scores], True)
        fake = self._gan_loss([s[n_real:] for s in scores], False)
        return self.config.lambda_gan * (real + fake)

    def _noise(self, images: torch.Tensor, stream: torch.Generator) -> torch.Tensor:
        """N(0, 1) noise for a batch's two latent samples (its code and its translation's)."""
        n, _, height, width = images.shape
        shape = (2, n, 4 * self.config.ngf, height // 4, width // 4)
        return torch.randn(shape, generator=stream, device=self.device)

    # -- state -------------------------------------------------------------------------------------
    def generator_state(self) -> dict[str, torch.Tensor]:
        """The source->target translator's weights, on the CPU, for inference."""
        state = self.generators.translator().state_dict()
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    def _extra_state(self) -> dict[str, Any]:
        return {"noise": self.noise.get_state()}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.noise.set_state(state["noise"])
