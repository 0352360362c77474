"""TB-like findings: upper-zone nodules, cavities and consolidation, as extra attenuation.

Each finding is a frozen dataclass with a pure ``render(X, Y)`` returning the attenuation it adds
(negative inside a cavity's lucent centre) on a grid of patient coordinates (see ``anatomy.py``).
Amplitudes scale with ``lesion_strength``, a global knob used to tune how hard the task is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harmonize.synth.arrays import FloatArray

if TYPE_CHECKING:
    from harmonize.synth.anatomy import Lung


def ball(d2: FloatArray, radius: float) -> FloatArray:
    """Path length through a sphere of ``radius`` at squared distance ``d2``, peak 1."""
    return np.sqrt(np.clip(1.0 - d2 * np.float32(1.0 / radius**2), 0.0, None))


@dataclass(frozen=True)
class Nodules:
    """A cluster of small round opacities (acinar/tree-in-bud nodules)."""

    centers: tuple[tuple[float, float], ...]  # (X, Y)
    radii: tuple[float, ...]
    amplitude: float

    def render(self, x: FloatArray, y: FloatArray) -> FloatArray:
        out = np.zeros_like(x)
        for (cx, cy), r in zip(self.centers, self.radii, strict=True):
            out += ball((x - cx) ** 2 + (y - cy) ** 2, r)
        return out * np.float32(self.amplitude)


@dataclass(frozen=True)
class Cavity:
    """A thick-walled ring with a lucent (air-filled) centre and a faint surrounding halo."""

    center: tuple[float, float]
    outer: float
    inner: float
    amplitude: float
    lucency: float

    def render(self, x: FloatArray, y: FloatArray) -> FloatArray:
        d2 = (x - self.center[0]) ** 2 + (y - self.center[1]) ** 2
        wall = ball(d2, self.outer) - np.float32(0.9) * ball(d2, self.inner)
        halo = np.exp(d2 * np.float32(-1.0 / (2 * (1.6 * self.outer) ** 2)))
        return (
            np.float32(self.amplitude) * (wall + np.float32(0.25) * halo)
            - np.float32(self.lucency) * ball(d2, self.inner)
        ).astype(np.float32)


@dataclass(frozen=True)
class Consolidation:
    """An ill-defined patch of airspace opacity with an irregular, wavy density."""

    center: tuple[float, float]
    radius: float
    amplitude: float
    waves: tuple[tuple[float, float, float], ...]  # (kx, ky, phase) of the irregularity

    def render(self, x: FloatArray, y: FloatArray) -> FloatArray:
        dx, dy = x - self.center[0], y - self.center[1]
        envelope = np.exp((dx**2 + dy**2) * np.float32(-1.0 / (2 * self.radius**2)))
        texture = np.ones_like(x)
        for kx, ky, phase in self.waves:
            texture += np.float32(0.35) * np.sin(np.float32(kx) * dx + np.float32(ky) * dy + phase)
        return np.float32(self.amplitude) * envelope * np.clip(texture, 0.0, None)


Finding = Nodules | Cavity | Consolidation


def _point_in_lung(
    rng: np.random.Generator, lung: Lung, side: int, zone: tuple[float, float], inset: float
) -> tuple[float, float]:
    """A random (X, Y) inside ``lung`` at a height within ``zone`` (fractions of lung height),
    at least ``inset`` from the medial and lateral borders."""
    height = lung.costophrenic_y - lung.apex_y
    for _ in range(100):
        y = lung.apex_y + height * rng.uniform(*zone)
        lo = lung.medial + inset
        hi = float(lung.lateral(np.asarray(y))) - inset
        if hi > lo:
            return side * rng.uniform(lo, hi), y
    return side * (lung.medial + lung.width) / 2, lung.apex_y + 0.3 * height


def sample_findings(
    rng: np.random.Generator, lungs: tuple[Lung, Lung], lesion_strength: float
) -> tuple[Finding, ...]:
    """One to three TB-like findings, mostly in the upper zones, of strength ``lesion_strength``.

    ``lungs`` is (patient's right lung, patient's left lung).
    """
    s = lesion_strength
    kinds = [
        k
        for k, p in (("nodules", 0.7), ("cavity", 0.4), ("consolidation", 0.6))
        if rng.random() < p
    ] or ["nodules"]
    out: list[Finding] = []
    for kind in kinds:
        side_index = int(rng.integers(0, 2))
        lung, side = lungs[side_index], (-1, 1)[side_index]
        zone = (0.08, 0.4) if rng.random() < 0.8 else (0.35, 0.65)
        cx, cy = _point_in_lung(rng, lung, side, zone, inset=0.08)
        if kind == "nodules":
            n = int(rng.integers(4, 13))
            spread = rng.uniform(0.03, 0.06)
            centers = tuple(
                (cx + rng.normal(0, spread), cy + rng.normal(0, spread)) for _ in range(n)
            )
            radii = tuple(float(r) for r in rng.uniform(0.007, 0.016, n))
            out.append(Nodules(centers, radii, s * rng.uniform(0.3, 0.45)))
        elif kind == "cavity":
            outer = rng.uniform(0.025, 0.04)
            out.append(
                Cavity(
                    (cx, cy),
                    outer,
                    outer * rng.uniform(0.55, 0.7),
                    s * rng.uniform(0.45, 0.6),
                    s * rng.uniform(0.15, 0.3),
                )
            )
        else:
            waves = tuple(
                (rng.normal(0, 60), rng.normal(0, 60), rng.uniform(0, 2 * np.pi)) for _ in range(4)
            )
            out.append(
                Consolidation((cx, cy), rng.uniform(0.045, 0.08), s * rng.uniform(0.5, 0.7), waves)
            )
    return tuple(out)
