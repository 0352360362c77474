"""UNIT's networks: per-domain VAE encoders and decoders around shared residual blocks, the A->B
translator kept for inference, the multi-scale discriminators, and the translator rebuilt from a
saved model config.

UNIT assumes a shared latent space: an image of site A (source) and its counterpart of site B
(target) map to the same code z. Each domain has a VAE, an encoder ``E`` and a decoder ``G``;
the encoders' last residual blocks are ONE module (``enc_shared``) used by both domains, and so
are the decoders' first residual blocks (``dec_shared``). The encoder outputs the mean ``mu`` of
a unit-variance Gaussian, so sampling is ``z = mu + N(0, 1)`` (reparameterised). Translation
A->B is ``G_b(E_a(x_a))``; at inference it uses the mean (no sampling), so it is deterministic.

Example::

    generator = build_generator(recipe.model_config())
    generator.load_state_dict(recipe.generator_state())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from harmonize.errors import ModelError
from harmonize.gan.layers import ConvBlock, DiscriminatorPair, ResidualBlock, check_divisible_by_4
from harmonize.gan.unit.config import UNITConfig
from harmonize.validate import field_names

Domain = Literal["a", "b"]


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
        check_divisible_by_4(x, "the UNIT generator")
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
        check_divisible_by_4(real_a, "the UNIT generator")
        check_divisible_by_4(real_b, "the UNIT generator")
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


def build_discriminators(ndf: int, n_layers: int, n_scales: int) -> DiscriminatorPair:
    """``d_a`` and ``d_b``: one multi-scale discriminator per domain."""
    return DiscriminatorPair(
        MultiScaleDiscriminator(ndf, n_layers, n_scales),
        MultiScaleDiscriminator(ndf, n_layers, n_scales),
    )


def build_generator(model_config: Mapping[str, Any]) -> nn.Module:
    """The source->target translator for ``model_config`` (``UNITRecipe.model_config()``, as
    saved with the model), with untrained weights: load ``generator_state()`` into it.

    Keys that are not UNIT settings (e.g. ``load_size``, which inference reads) are ignored.
    """
    known = field_names(UNITConfig)
    config = UNITConfig.from_dict({k: v for k, v in model_config.items() if k in known})
    private = config.n_blocks - config.n_shared_blocks
    return UNITTranslator(
        PrivateEncoder(config.ngf, private),
        SharedBlocks(config.ngf, config.n_shared_blocks),
        SharedBlocks(config.ngf, config.n_shared_blocks),
        PrivateDecoder(config.ngf, private),
    )
