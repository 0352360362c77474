"""Neural harmonizers (CycleGAN, UNIT) at inference: saved generators applied to full images.

A trained model is ``harmonizer.json`` (method, model config, card, the SHA-256 of the weights)
next to ``weights.safetensors`` (the source→target generator). Loading never unpickles code.

Two ways to apply the generator to a full-resolution display image (``harmonize run --mode``):

- ``direct``: the generator on the full image (fully convolutional; padded to a multiple of 4,
  and run in overlapping tiles blended linearly when the image exceeds ``max_tile`` pixels a
  side). Output = the generator's pixels.
- ``curve`` (structure-safe): the generator runs on the image resized to model resolution; a
  monotone intensity curve is fitted from the (original, generated) pixel pairs (bin means, then
  isotonic regression) and applied to the full-resolution original through a lookup table. No
  structure can be invented, and the cost per image barely grows with its size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from harmonize import __version__
from harmonize.errors import ModelError
from harmonize.io.storage import Storage, join
from harmonize.methods.base import FORMAT_VERSION, MODEL_FILE, Harmonizer, check_display_image

WEIGHTS_FILE = "weights.safetensors"
CURVE_BINS = 256  # intensity bins of the fitted curve (display range [0, 1])
LUT_LEVELS = 65536  # the curve is applied through a 16-bit lookup table (DICOM has <= 16 bits)


def save_neural_model(
    out_uri: str,
    *,
    method: str,
    model_config: dict[str, Any],
    generator_state: Mapping[str, torch.Tensor],
    card: dict[str, Any] | None = None,
    storage: Storage | None = None,
    model_file: str = MODEL_FILE,
) -> str:
    """Write ``weights.safetensors`` then ``model_file`` (``harmonizer.json``; the classifier
    uses its own name) under ``out_uri``; returns the model file's URI. The JSON records the
    weights' SHA-256, so the model hash in a manifest changes whenever the weights do."""
    store = storage or Storage()
    weights = save_safetensors(
        {k: v.detach().cpu().contiguous() for k, v in generator_state.items()}
    )
    doc = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "code_version": __version__,
        "state": {
            "model_config": model_config,
            "weights_file": WEIGHTS_FILE,
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
        },
        "card": card or {},
    }
    store.write(join(out_uri, WEIGHTS_FILE), weights)
    target = join(out_uri, model_file)
    store.write_text(target, json.dumps(doc, indent=1, sort_keys=True))
    return target


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, H, W) at the bottom/right to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


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


def fit_monotone_curve(
    original: torch.Tensor, generated: torch.Tensor, bins: int = CURVE_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) knots of a non-decreasing curve y = f(x) fitted to pixel pairs in [0, 1].

    Pixels are grouped by original intensity into ``bins`` bins; each occupied bin contributes
    its mean original and mean generated value, weighted by its pixel count, to an isotonic
    regression (pool-adjacent-violators)."""
    o = original.reshape(-1).float().clamp(0, 1)
    g = generated.reshape(-1).float().clamp(0, 1)
    idx = (o * bins).long().clamp_(max=bins - 1)
    counts = torch.bincount(idx, minlength=bins).double()
    sum_o = torch.zeros(bins, dtype=torch.float64, device=o.device).index_add_(0, idx, o.double())
    sum_g = torch.zeros(bins, dtype=torch.float64, device=o.device).index_add_(0, idx, g.double())
    occupied = counts > 0
    n = counts[occupied].cpu().numpy()
    x = (sum_o[occupied] / counts[occupied]).cpu().numpy()
    y = (sum_g[occupied] / counts[occupied]).cpu().numpy()
    if x.size == 1:  # a flat image: the curve is one point
        return x, y
    from sklearn.isotonic import IsotonicRegression

    y_fit = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(x, y, sample_weight=n)
    return x, y_fit.predict(x)


#: Curve mode refuses a generator whose output correlates below this with its input: an
#: increasing curve cannot follow a negative image and would flatten it. Untrained generators
#: score about -0.2 to 0.5; a generator that learnt the negative of its input, about -0.9.
MIN_CURVE_CORRELATION = -0.5


def check_keeps_order(original: torch.Tensor, generated: torch.Tensor) -> None:
    """Raise ModelError when ``generated`` is (roughly) a negative of ``original``: their
    pixel correlation is below ``MIN_CURVE_CORRELATION``."""
    pair = torch.stack([original.reshape(-1).double(), generated.reshape(-1).double()])
    r = float(torch.corrcoef(pair)[0, 1])
    if r < MIN_CURVE_CORRELATION:  # NaN (a flat image) passes: its curve is one point
        raise ModelError(
            f"the generator turns this image into a negative (pixel correlation {r:.2f} with the "
            "original), which curve mode cannot follow; the model learnt an inverted mapping: "
            "check its card's validation SSIM and retrain (for UNIT keep 3 discriminator scales)"
        )


def apply_curve(image: torch.Tensor, knots_x: np.ndarray, knots_y: np.ndarray) -> torch.Tensor:
    """The curve through the knots (linear between them, constant beyond) applied to every
    pixel of ``image`` in [0, 1] through a 16-bit lookup table."""
    levels = np.linspace(0.0, 1.0, LUT_LEVELS)
    lut = torch.from_numpy(np.interp(levels, knots_x, knots_y).astype(np.float32)).to(image.device)
    index = (image.clamp(0, 1) * (LUT_LEVELS - 1) + 0.5).long()
    return lut[index]


class NeuralHarmonizer(Harmonizer):
    """A trained generator applied in ``direct`` or ``curve`` mode. Subclasses set ``method``
    and ``build_generator`` (model config dict → nn.Module)."""

    modes: ClassVar[tuple[str, ...]] = ("direct", "curve")
    max_tile: ClassVar[int] = 1024  # direct mode: larger images run in tiles of this size
    tile_overlap: ClassVar[int] = 64

    def __init__(self, model_config: dict[str, Any], generator: torch.nn.Module) -> None:
        self.model_config = model_config
        self.device = _device()
        self.generator = generator.to(self.device).eval()
        self.model_size = int(model_config.get("load_size", 286))

    @staticmethod
    def build_generator(model_config: dict[str, Any]) -> torch.nn.Module:
        raise NotImplementedError

    def fit(self, target_images: Iterable[np.ndarray]) -> Harmonizer:
        raise ModelError(
            f"{self.method} is trained on unpaired images of two sites, not fitted: "
            f"use `harmonize train {self.method} --source URI --target URI --out URI`"
        )

    @torch.inference_mode()
    def _generate(self, x01: torch.Tensor) -> torch.Tensor:
        """The generator on (1, 1, H, W) display values in [0, 1]; returns [0, 1], same size."""
        padded, (h, w) = _pad_to_multiple(x01 * 2.0 - 1.0, 4)
        out = self.generator(padded)[..., :h, :w]
        return (out.float() + 1.0) / 2.0

    @torch.inference_mode()
    def transform_tensor(self, x01: torch.Tensor) -> torch.Tensor:
        """Harmonize (1, 1, H, W) display values on the model's device."""
        if self.mode == "direct":
            return apply_tiled(self._generate, x01, self.max_tile, self.tile_overlap).clamp(0, 1)
        h, w = x01.shape[-2:]
        scale = self.model_size / min(h, w)
        small = x01
        if scale < 1.0:
            size = (max(4, round(h * scale)), max(4, round(w * scale)))
            small = F.interpolate(
                x01, size=size, mode="bilinear", antialias=True, align_corners=False
            )
        generated = self._generate(small)
        check_keeps_order(small, generated)
        knots_x, knots_y = fit_monotone_curve(small, generated)
        return apply_curve(x01, knots_x, knots_y)

    def transform(self, image: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(check_display_image(image))
        if not array.flags.writeable:  # torch wants writable memory (pipeline buffers are not)
            array = array.copy()
        x = torch.from_numpy(array)
        out = self.transform_tensor(x.to(self.device)[None, None])
        return out[0, 0].cpu().numpy().astype(np.float32, copy=False)

    def state(self) -> dict[str, Any]:
        raise ModelError(
            f"{self.method} models are saved by training (save_neural_model), not by state()"
        )

    @classmethod
    def from_state(
        cls, state: dict[str, Any], read_file: Callable[[str], bytes] | None = None
    ) -> NeuralHarmonizer:
        if read_file is None:
            raise ModelError(f"{cls.method} needs its weights file to load")
        try:
            model_config = dict(state["model_config"])
            weights = read_file(state.get("weights_file", WEIGHTS_FILE))
            expected = state["weights_sha256"]
        except (KeyError, TypeError) as err:
            raise ModelError(f"{cls.method} model file is malformed: {err}") from err
        except Exception as err:
            raise ModelError(f"cannot read the {cls.method} weights: {err}") from err
        if hashlib.sha256(weights).hexdigest() != expected:
            raise ModelError(
                f"the {cls.method} weights do not match their recorded SHA-256: the model folder "
                "was changed or copied partially; copy it again or retrain"
            )
        generator = cls.build_generator(model_config)
        try:
            generator.load_state_dict(load_safetensors(weights))
        except RuntimeError as err:
            raise ModelError(f"the {cls.method} weights do not fit its config: {err}") from err
        return cls(model_config, generator)


class CycleGANHarmonizer(NeuralHarmonizer):
    method: ClassVar[str] = "cyclegan"

    @staticmethod
    def build_generator(model_config: dict[str, Any]) -> torch.nn.Module:
        from harmonize.methods.cyclegan import build_generator

        return build_generator(model_config)


class UNITHarmonizer(NeuralHarmonizer):
    method: ClassVar[str] = "unit"

    @staticmethod
    def build_generator(model_config: dict[str, Any]) -> torch.nn.Module:
        from harmonize.methods.unit import build_generator

        return build_generator(model_config)
