"""Neural harmonizers (any GAN of the registry) at inference: a trained generator applied to full
images.

A trained model is ``harmonizer.json`` (method, model config, card, the SHA-256 of the weights)
next to ``weights.safetensors`` (the source->target generator), read by
``harmonize.models.files`` and built by the method registry. Two ways to apply the generator to a
full-resolution display image (``harmonize run --mode``):

- ``direct``: the generator on the full image (fully convolutional; padded to a multiple of 4,
  and run in overlapping tiles blended linearly when the image exceeds ``max_tile`` pixels a
  side). Output = the generator's pixels.
- ``curve`` (structure-safe): a monotone intensity curve fitted to the generator's output at
  model resolution, applied to the original (``harmonize.methods.curve``).
- ``local`` (structure-safe, spatially varying): monotone curves on a coarse grid of tiles,
  blended smoothly, plus bounded gains on the detail bands the model resolution holds, fitted
  to the generator's output and applied to the original (``harmonize.methods.local``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from harmonize.device import pick_device
from harmonize.imaging.preprocess import (
    from_model_range,
    pad_to_multiple,
    to_model_range,
    unpad,
)
from harmonize.methods.base import Harmonizer, check_display_image
from harmonize.methods.curve import apply_in_curve_mode
from harmonize.methods.local import apply_in_local_mode

DEFAULT_MODEL_SIZE = 286  # the published load size, for model configs that do not record theirs


def _blend_ramp(length: int, overlap: int, first: bool, last: bool) -> torch.Tensor:
    """1-D weights of one tile: linear ramps over the overlaps shared with its neighbours."""
    ramp = torch.ones(length)
    if overlap > 0:
        rise = torch.linspace(0.0, 1.0, overlap + 2)[1:-1]
        if not first:
            ramp[:overlap] = rise
        if not last:
            ramp[-overlap:] = rise.flip(0)
    return ramp


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` covering ``size`` with at least ``overlap`` shared."""
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def apply_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int
) -> torch.Tensor:
    """``fn`` (shape-preserving, on (1, 1, h, w)) over overlapping tiles of ``x`` (1, 1, H, W),
    blended with linear ramps; equals ``fn(x)`` when the image fits in one tile."""
    h, w = x.shape[-2:]
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x)
    out = torch.zeros_like(x)
    weight = torch.zeros_like(x)
    for i, y0 in enumerate(ys):
        for j, x0 in enumerate(xs):
            th, tw = min(tile, h), min(tile, w)
            piece = fn(x[..., y0 : y0 + th, x0 : x0 + tw])
            wy = _blend_ramp(th, overlap, i == 0, i == len(ys) - 1).to(x)
            wx = _blend_ramp(tw, overlap, j == 0, j == len(xs) - 1).to(x)
            wgt = wy[:, None] * wx[None, :]
            out[..., y0 : y0 + th, x0 : x0 + tw] += piece * wgt
            weight[..., y0 : y0 + th, x0 : x0 + tw] += wgt
    return out / weight


class NeuralHarmonizer(Harmonizer):
    """A trained generator (any GAN method of the registry) applied in ``direct``, ``curve`` or
    ``local`` mode.

    Args:
        method: the method's registry name (``cyclegan``, ``unit``, ``cut``).
        model_config: the saved model config (its ``load_size`` is the model resolution).
        generator: the source->target network with its trained weights.
        device: where it runs (default: the current CUDA device, else the CPU).
    """

    modes: ClassVar[tuple[str, ...]] = ("direct", "curve", "local")
    max_tile: ClassVar[int] = 1024  # direct mode: larger images run in tiles of this size
    tile_overlap: ClassVar[int] = 64

    def __init__(
        self,
        method: str,
        model_config: dict[str, Any],
        generator: torch.nn.Module,
        device: torch.device | str | None = None,
    ) -> None:
        self.method = method  # type: ignore[misc]  # per instance: one class serves every GAN
        self.model_config = model_config
        self.device = pick_device(device)
        self.generator = generator.to(self.device).eval()
        self.model_size = int(model_config.get("load_size", DEFAULT_MODEL_SIZE))

    @torch.inference_mode()
    def _generate(self, x01: torch.Tensor) -> torch.Tensor:
        """The generator on (1, 1, H, W) display values in [0, 1]; returns [0, 1], same size."""
        padded, padding = pad_to_multiple(to_model_range(x01), 4, mode="auto")
        return from_model_range(unpad(self.generator(padded), padding).float())

    @torch.inference_mode()
    def transform_tensor(self, x01: torch.Tensor) -> torch.Tensor:
        """Harmonize (1, 1, H, W) display values on the model's device."""
        if self.mode == "direct":
            return apply_tiled(self._generate, x01, self.max_tile, self.tile_overlap).clamp(0, 1)
        if self.mode == "local":
            return apply_in_local_mode(x01, self._generate, self.model_size)
        return apply_in_curve_mode(x01, self._generate, self.model_size)

    def transform(self, image: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(check_display_image(image))
        if not array.flags.writeable:  # torch wants writable memory (pipeline buffers are not)
            array = array.copy()
        x = torch.from_numpy(array)
        out = self.transform_tensor(x.to(self.device)[None, None])
        return out[0, 0].cpu().numpy().astype(np.float32, copy=False)
