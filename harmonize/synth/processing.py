"""Vendor post-processing: the spatially varying stages a site applies to every radiograph after
the detector response and before quantisation, on display values in [0, 1] (1 = attenuating).

No global intensity curve undoes these, which is what sets real sites apart. Every stage is a
frozen, validated dataclass with a YAML ``kind``; sizes are in millimetres at the detector, so
a stage does the same to the anatomy whatever matrix the image is rendered at.

- ``bands``: gains of frequency bands an octave apart (a Laplacian-type pyramid written as a
  smooth partition of unity in frequency): gains > 1 on the fine bands boost detail, a
  ``residual_gain`` < 1 compresses the large-scale dynamic range (multi-scale processing).
- ``unsharp``: ``x + amount * (x - blur(x))``, a Gaussian of ``sigma_mm``.
- ``noise``: additive noise whose power spectrum falls as ``f ** -slope`` (0: white).
- ``grid``: the shadow of an anti-scatter grid, a sinusoid of ``lines_per_mm`` across the rows or
  the columns.
- ``shutters``: collimation, a border of the field replaced by white (unexposed) or black (mask).
- ``marker``: a burned-in laterality letter (L or R) in a corner.

Example::

    stages = parse_stages([{"kind": "bands", "gains": [1.6, 1.3]}, {"kind": "grid"}], "site")
    processed = apply_stages(image, stages, pixel_mm=0.21, rng=np.random.default_rng(0))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import ndimage

from harmonize.synth.arrays import FloatArray
from harmonize.validate import (
    Bounded,
    FieldError,
    check_choice,
    check_keys,
    check_number,
    set_field,
)


def frequencies(shape: tuple[int, int], pixel_mm: float) -> FloatArray:
    """Radial spatial frequency (cycles/mm) of every bin of ``np.fft.rfft2`` of ``shape``."""
    fy = np.fft.fftfreq(shape[0], d=pixel_mm)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=pixel_mm)[None, :]
    return np.hypot(fy, fx).astype(np.float32)


def band_weights(f: FloatArray, n_bands: int, finest_mm: float) -> list[FloatArray]:
    """A partition of unity over frequency: ``n_bands`` bands an octave apart, band 0 the finest
    (centred on ``1 / (2 * finest_mm)`` cycles/mm), then the residual (everything coarser).

    Neighbours cross over smoothly (a raised cosine in log2 frequency), so the weights sum to 1
    at every frequency and each weight is exactly 1 at its band's centre."""
    centre0 = 1.0 / (2.0 * finest_mm)
    octaves = np.log2(np.maximum(f, 1e-12) / centre0)  # 0 at band 0's centre, -k at band k's
    weights = []
    for k in range(n_bands + 1):
        if k == 0:  # everything finer than band 0's centre belongs to band 0
            t = np.clip(-octaves, 0.0, 1.0)
        elif k == n_bands:  # the residual: 1 from the last band's centre down to f = 0
            t = np.clip(octaves + k, 0.0, 1.0)
        else:
            t = np.clip(octaves + k, -1.0, 1.0)
        weights.append((0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32))
    return weights


@dataclass(frozen=True)
class Bands(Bounded):
    """Multi-scale band gains: band ``k`` (k = 0 finest) is centred on detail of size
    ``finest_mm * 2**k`` (a half period); ``residual_gain`` scales everything coarser than the
    last band, around the image's mean (so the mean level stays)."""

    gains: tuple[float, ...] = (1.5, 1.2)
    finest_mm: float = 0.5
    residual_gain: float = 1.0
    kind: ClassVar[str] = "bands"
    bounds = {"finest_mm": (0.05, 50), "residual_gain": (0, 10)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.gains, (list, tuple)) or not 1 <= len(self.gains) <= 8:
            raise FieldError(
                f"bands gains must be a list of 1 to 8 numbers, got {self.gains!r}", "gains"
            )
        gains = tuple(check_number("bands", "gains", g, low=0, high=10) for g in self.gains)
        set_field(self, "gains", gains)

    def response(self, shape: tuple[int, int], pixel_mm: float) -> FloatArray:
        """The stage's frequency response on the ``rfft2`` bins of ``shape``."""
        weights = band_weights(frequencies(shape, pixel_mm), len(self.gains), self.finest_mm)
        total = np.zeros_like(weights[0])
        for weight, g in zip(weights, [*self.gains, self.residual_gain], strict=True):
            total += np.float32(g) * weight
        return total

    def __call__(self, image: FloatArray, pixel_mm: float, rng: np.random.Generator) -> FloatArray:
        # Reflect-padded, so that the FFT's wrap-around does not bleed one edge into the other.
        pad = min(image.shape) // 4
        mean = np.float32(image.mean())
        padded = np.pad(image - mean, pad, mode="reflect")
        spectrum = np.fft.rfft2(padded) * self.response(padded.shape, pixel_mm)
        out = np.fft.irfft2(spectrum, s=padded.shape)[pad:-pad, pad:-pad]
        return out.astype(np.float32) + mean


@dataclass(frozen=True)
class Unsharp(Bounded):
    """Unsharp masking: ``x + amount * (x - gaussian(x, sigma_mm))``."""

    amount: float = 0.6
    sigma_mm: float = 2.0
    kind: ClassVar[str] = "unsharp"
    bounds = {"amount": (0, 10), "sigma_mm": (0.05, 100)}

    def __call__(self, image: FloatArray, pixel_mm: float, rng: np.random.Generator) -> FloatArray:
        blurred = ndimage.gaussian_filter(image, self.sigma_mm / pixel_mm, mode="reflect")
        return image + np.float32(self.amount) * (image - blurred)


@dataclass(frozen=True)
class Noise(Bounded):
    """Additive noise of standard deviation ``sigma`` (display units) whose power spectrum
    falls as ``f ** -slope`` above ``1 / period_mm`` cycles/mm (flat below it): 0 is white
    noise, larger slopes give coarser, blotchier texture."""

    sigma: float = 0.01
    slope: float = 1.0
    period_mm: float = 20.0
    kind: ClassVar[str] = "noise"
    bounds = {"sigma": (0, 1), "slope": (0, 4), "period_mm": (0.1, 1000)}

    def __call__(self, image: FloatArray, pixel_mm: float, rng: np.random.Generator) -> FloatArray:
        white = rng.standard_normal(image.shape, dtype=np.float32)
        f = np.maximum(frequencies(image.shape, pixel_mm), np.float32(1.0 / self.period_mm))
        amplitude = f ** np.float32(-self.slope / 2)  # power ~ f**-slope
        amplitude[0, 0] = 0.0  # no offset of the whole image
        shaped = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=image.shape)
        shaped *= np.float32(self.sigma) / np.float32(shaped.std() + 1e-12)
        return image + shaped.astype(np.float32)


@dataclass(frozen=True)
class Grid(Bounded):
    """An anti-scatter grid's shadow: ``depth * cos(2 pi lines_per_mm x)`` across ``axis``
    (``columns``: lines run down the image, the pattern varies along a row)."""

    lines_per_mm: float = 1.2
    depth: float = 0.02
    axis: Literal["rows", "columns"] = "columns"
    kind: ClassVar[str] = "grid"
    bounds = {"lines_per_mm": (0.05, 20), "depth": (0, 0.5)}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("grid", "axis", self.axis, ("rows", "columns"))

    def __call__(self, image: FloatArray, pixel_mm: float, rng: np.random.Generator) -> FloatArray:
        n = image.shape[1] if self.axis == "columns" else image.shape[0]
        x = np.arange(n, dtype=np.float64) * pixel_mm
        wave = (self.depth * np.cos(2 * np.pi * self.lines_per_mm * x)).astype(np.float32)
        return image + (wave[None, :] if self.axis == "columns" else wave[:, None])


@dataclass(frozen=True)
class Shutters(Bounded):
    """Collimation of the displayed field: ``margin_mm`` at each edge (``margin_x_mm`` on the
    left and right, if set) is replaced by ``fill`` (1: white, an unexposed border; 0: black,
    a vendor's electronic mask), across a soft edge of ``edge_mm``."""

    margin_mm: float = 15.0
    margin_x_mm: float | None = None
    fill: float = 1.0
    edge_mm: float = 1.0
    kind: ClassVar[str] = "shutters"
    bounds = {"margin_mm": (0, 200), "margin_x_mm": (0, 200), "fill": (0, 1), "edge_mm": (0.01, 50)}

    def inside(self, shape: tuple[int, int], pixel_mm: float) -> FloatArray:
        """1 inside the field, 0 behind the shutters, a linear ramp across the edge."""
        margins = (self.margin_mm, self.margin_mm if self.margin_x_mm is None else self.margin_x_mm)
        ramps = []
        for n, margin in zip(shape, margins, strict=True):
            x = (np.arange(n) + 0.5) * pixel_mm
            distance = np.minimum(x, n * pixel_mm - x) - margin  # > 0 inside
            ramps.append(np.clip(0.5 + distance / self.edge_mm, 0.0, 1.0).astype(np.float32))
        return ramps[0][:, None] * ramps[1][None, :]

    def __call__(self, image: FloatArray, pixel_mm: float, rng: np.random.Generator) -> FloatArray:
        inside = self.inside(image.shape, pixel_mm)
        return image * inside + np.float32(self.fill) * (1 - inside)


CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
#: A 5 x 7 bitmap of each laterality letter, top row first.
LETTERS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


@dataclass(frozen=True)
class Marker(Bounded):
    """A burned-in laterality marker: ``letter`` (L or R), ``height_mm`` tall, in ``value``,
    ``inset_mm`` from the corner (top-left, top-right, bottom-left or bottom-right)."""

    letter: str = "R"
    height_mm: float = 14.0
    inset_mm: float = 20.0
    value: float = 1.0
    corner: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = "top-left"
    kind: ClassVar[str] = "marker"
    bounds = {"height_mm": (1, 200), "inset_mm": (0, 200), "value": (0, 1)}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("marker", "letter", self.letter, sorted(LETTERS))
        check_choice("marker", "corner", self.corner, CORNERS)

    def mask(self, shape: tuple[int, int], pixel_mm: float) -> np.ndarray:
        """Boolean (H, W): the letter's pixels (nearest-neighbour scaled bitmap)."""
        bitmap = np.array([[c == "1" for c in row] for row in LETTERS[self.letter]])
        cell = max(1, round(self.height_mm / pixel_mm / bitmap.shape[0]))
        glyph = np.kron(bitmap, np.ones((cell, cell), dtype=bool))
        inset = round(self.inset_mm / pixel_mm)
        h, w = min(glyph.shape[0], shape[0] - inset), min(glyph.shape[1], shape[1] - inset)
        out = np.zeros(shape, dtype=bool)
        if h <= 0 or w <= 0:
            return out
        top = inset if self.corner.startswith("top") else shape[0] - inset - h
        left = inset if self.corner.endswith("left") else shape[1] - inset - w
        out[top : top + h, left : left + w] = glyph[:h, :w]
        return out

    def __call__(self, image: FloatArray, pixel_mm: float, rng: np.random.Generator) -> FloatArray:
        return np.where(self.mask(image.shape, pixel_mm), np.float32(self.value), image)


Stage = Bands | Unsharp | Noise | Grid | Shutters | Marker
STAGES: dict[str, type[Stage]] = {
    cls.kind: cls for cls in (Bands, Unsharp, Noise, Grid, Shutters, Marker)
}


def parse_stages(raw: Any, where: str) -> tuple[Stage, ...]:
    """The stages of a profile's ``processing:`` list (each a mapping with a ``kind``)."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise FieldError(f"{where} processing must be a list of stages, got {raw!r}", "processing")
    stages: list[Stage] = []
    for item in raw:
        if isinstance(item, Bands | Unsharp | Noise | Grid | Shutters | Marker):
            stages.append(item)
            continue
        kind = item.get("kind") if isinstance(item, dict) else None
        if kind not in STAGES:
            raise FieldError(
                f"{where} processing stage kind must be one of {', '.join(sorted(STAGES))}, "
                f"got {kind!r}",
                "kind",
            )
        cls = STAGES[kind]
        check_keys(item, ["kind", *(f.name for f in fields(cls))], f"{where} {kind} stage")
        stages.append(cls(**{k: v for k, v in item.items() if k != "kind"}))
    return tuple(stages)


def stages_to_list(stages: Sequence[Stage]) -> list[dict[str, Any]]:
    """The YAML list of ``stages``; ``parse_stages`` inverts it."""
    out = []
    for stage in stages:
        values = {f.name: getattr(stage, f.name) for f in fields(stage)}
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        out.append({"kind": stage.kind, **plain})
    return out


def apply_stages(
    image: FloatArray, stages: Sequence[Stage], pixel_mm: float, rng: np.random.Generator
) -> FloatArray:
    """``image`` through every stage in order, clipped to [0, 1] at the end."""
    if not stages:
        return image
    out = image
    for stage in stages:
        out = stage(out, pixel_mm, rng)
    return np.clip(out, 0.0, 1.0, dtype=np.float32)
