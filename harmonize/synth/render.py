"""Render a :class:`~harmonize.synth.anatomy.Patient` as a map of X-ray attenuation line integrals.

The map ``A`` is what a detector sees through ``I = exp(-A)``: ~0 in air, ~1.8 in the lungs,
~4 through the mediastinum, higher through bone, ~7.5 behind the collimator blades. It is a pure
function of the patient and the grid size, rendered at a modest size and upsampled by the
detector model (``detector.py``), which adds noise and blur at full resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from harmonize.synth.anatomy import Lung, Patient
from harmonize.synth.arrays import FloatArray
from harmonize.synth.findings import ball
from harmonize.synth.resample import resize

COLLIMATED = 7.5  # attenuation behind the collimator blades: almost no primary exposure
_F = np.float32

# Body outline (half-width) and central soft-tissue attenuation, by height Y.
_BODY_Y = [-0.3, 0.0, 0.05, 0.1, 0.16, 0.25, 0.5, 0.8, 1.4]
_BODY_W = [0.13, 0.14, 0.18, 0.55, 0.95, 1.0, 0.93, 0.9, 0.88]
_SOFT_Y = [-0.3, 0.05, 0.15, 0.3, 0.75, 0.9, 1.4]
_SOFT_T = [2.6, 2.8, 3.6, 4.0, 4.1, 4.5, 4.6]


def _smoothstep(t: FloatArray) -> FloatArray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _tube(d: FloatArray, half: float, cortex: float = 0.55) -> FloatArray:
    """Path length across a hollow bone (dense cortex, lighter marrow), peak 1 at the rim."""
    r2 = (d * _F(1.0 / half)) ** 2
    outer = np.sqrt(np.clip(1.0 - r2, 0.0, None))
    inner = np.sqrt(np.clip(0.75**2 - r2, 0.0, None))
    return outer - _F(cortex) * inner


class _Grid:
    """Image coordinates of every pixel and their position in patient coordinates."""

    def __init__(self, patient: Patient, size: int) -> None:
        self.size = size
        self.p = patient
        c = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.x = (2 * c - 1)[None, :]  # image x in [-1, 1]
        self.y = c[:, None]  # image y in [0, 1]
        t = math.radians(patient.tilt_deg)
        cos, sin, s = _F(math.cos(t)), _F(math.sin(t)), _F(patient.scale)
        xc, yc = self.x - _F(patient.shift_x), self.y - _F(0.5 + patient.shift_y)
        self.X = (cos * xc + sin * yc) / s
        self.Y = (-sin * xc + cos * yc) / s + _F(0.5)

    def to_pixel(self, X: float, Y: float) -> tuple[float, float]:
        """(row, col) of the patient point (X, Y)."""
        p = self.p
        t = math.radians(p.tilt_deg)
        xr, yr = X * p.scale, (Y - 0.5) * p.scale
        x = math.cos(t) * xr - math.sin(t) * yr + p.shift_x
        y = math.sin(t) * xr + math.cos(t) * yr + 0.5 + p.shift_y
        return y * self.size - 0.5, (x + 1) / 2 * self.size - 0.5

    def window(self, X0: float, X1: float, Y0: float, Y1: float) -> tuple[slice, slice]:
        """Pixel slices covering the patient-space box [X0, X1] x [Y0, Y1]."""
        corners = [self.to_pixel(a, b) for a in (X0, X1) for b in (Y0, Y1)]
        rows = [r for r, _ in corners]
        cols = [c for _, c in corners]
        r0, r1 = max(int(min(rows)) - 1, 0), min(int(max(rows)) + 2, self.size)
        c0, c1 = max(int(min(cols)) - 1, 0), min(int(max(cols)) + 2, self.size)
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def _soft_tissue(g: _Grid) -> FloatArray:
    half = np.interp(g.Y, _BODY_Y, _BODY_W).astype(np.float32)
    thick = np.interp(g.Y, _SOFT_Y, _SOFT_T).astype(np.float32) * _F(g.p.habitus)
    return thick * np.sqrt(np.clip(1.0 - (g.X / half) ** 2, 0.0, None))


def _ellipse_radius(g: _Grid, cx: float, cy: float, a: float, b: float, deg: float) -> FloatArray:
    t = math.radians(deg)
    dx, dy = g.X - _F(cx), g.Y - _F(cy)
    u = _F(math.cos(t)) * dx + _F(math.sin(t)) * dy
    v = -_F(math.sin(t)) * dx + _F(math.cos(t)) * dy
    return np.sqrt((u / _F(a)) ** 2 + (v / _F(b)) ** 2)


def _lungs(g: _Grid) -> tuple[FloatArray, FloatArray]:
    """(depth of lung air along the beam in [0, 1], visible lung mask in [0, 1])."""
    p = g.p
    mask = p.right.contains(-g.X, g.Y) | p.left.contains(g.X, g.Y)
    heart_r = _ellipse_radius(g, p.heart_x, p.heart_y, p.heart_a, p.heart_b, p.heart_angle_deg)
    knob_r = _ellipse_radius(g, 0.07, p.right.apex_y + 0.24, 0.06, 0.045, 0.0)
    # The heart and aortic arch are ellipsoids: the lung air they displace grows from their
    # border inwards, which gives a crisp but not cut-out silhouette.
    heart = np.clip(1 - heart_r**2, 0, 1) ** _F(0.35)
    knob = np.clip(1 - knob_r**2, 0, 1) ** _F(0.35)
    # Depth of air along the beam: thin at the lung edges, full a few cm inside. Computed at half
    # resolution (it is smooth) to keep rendering fast.
    half = mask[::2, ::2]
    dist = ndimage.distance_transform_edt(half).astype(np.float32) * _F(2.0 / g.size)
    dist = ndimage.gaussian_filter(dist, 1.0)
    depth = 1 - np.exp(-dist / _F(0.03 * p.scale))
    depth = resize(depth, g.size)
    soft_mask = resize(ndimage.uniform_filter(mask.astype(np.float32), 3)[::2, ::2], g.size)
    soft_mask = np.clip((soft_mask - _F(0.02)) * _F(1 / 0.98), 0.0, 1.0)  # exactly 0 outside
    occlusion = np.maximum(_F(0.85) * heart, _F(0.9) * knob)
    return depth * (1 - occlusion), soft_mask * (1 - _F(0.6) * occlusion)


def _trachea(g: _Grid) -> FloatArray:
    carina = g.p.right.apex_y + 0.24
    along = _smoothstep((g.Y + _F(0.1)) / _F(0.1)) * _smoothstep((_F(carina) - g.Y) / _F(0.04))
    return -_F(0.6) * ball(g.X**2, 0.03) * along


def _spine(g: _Grid) -> FloatArray:
    column = ball(g.X**2, 0.065)
    period = _F(0.052)  # one vertebra
    phase = np.mod(g.Y - _F(g.p.rib_start), period) / period
    bodies = _F(0.75) + _F(0.25) * _smoothstep((np.minimum(phase, 0.88 - phase) + 0.02) / 0.06)
    out = _F(0.5) * column * bodies
    # Pedicles: small bright rings either side of the midline, one pair per vertebra.
    cy = (np.floor((g.Y - _F(g.p.rib_start)) / period) + _F(0.35)) * period + _F(g.p.rib_start)
    for side in (-1.0, 1.0):
        d = np.sqrt(((g.X - _F(side * 0.04)) / _F(0.7)) ** 2 + (g.Y - cy) ** 2)
        out += _F(0.25) * _tube(d, 0.012, cortex=0.8)
    return out


CentreLine = Callable[[FloatArray], tuple[FloatArray, FloatArray]]


def _curve_bone(
    g: _Grid,
    side: float,
    u0: float,
    u1: float,
    centre: CentreLine,
    half: float,
    amp: float,
    y_box: tuple[float, float],
) -> FloatArray:
    """A bone of half-thickness ``half`` whose centre line is ``Y = centre(u)[0]`` (slope
    ``centre(u)[1]``) for ``u = side * X`` in [u0, u1], drawn only inside ``y_box``."""
    X0, X1 = (u0, u1) if side > 0 else (-u1, -u0)
    rows, cols = g.window(X0, X1, *y_box)
    out = np.zeros((g.size, g.size), np.float32)
    X, Y = np.broadcast_arrays(g.X, g.Y)
    X, Y = X[rows, cols], Y[rows, cols]
    if X.size == 0:
        return out
    uu = side * X
    yc, slope = centre(uu)
    d = (Y - yc) / np.sqrt(1 + slope**2)
    fade = _smoothstep((uu - _F(u0)) / _F(0.03)) * _smoothstep((_F(u1) - uu) / _F(0.03))
    out[rows, cols] = _F(amp) * _tube(d, half) * fade
    return out


def _ribs_and_shoulders(g: _Grid) -> FloatArray:
    p = g.p
    out = np.zeros((g.size, g.size), np.float32)
    for side, lung in ((-1.0, p.right), (1.0, p.left)):
        span = lung.width + 0.04
        for k in range(11):
            y0 = p.rib_start + k * p.rib_spacing * (1 + 0.03 * k)
            # Posterior rib: a parabola rising from the spine to a crest about a third of the way
            # out, then falling to the lateral chest wall (``drop`` below its start).
            drop = (0.09 + 0.012 * k) * p.rib_drop
            b, a = 2.5 * drop, 1.5 * drop

            def posterior(uu, y0=y0, a=a, b=b, span=span):
                f = (uu - _F(0.04)) / _F(span)
                return y0 - a * f + b * f**2, (-a + 2 * b * f) / span

            half = p.rib_half * (0.85 + 0.02 * k)
            box = (y0 - 0.25 * drop - 0.03, y0 + drop * 1.4 + 0.05)
            out += _curve_bone(g, side, 0.04, span * 1.08, posterior, half, 0.3, box)
        for k in range(6):
            y_lat = lung.apex_y + 0.05 + 0.085 * k
            fall = 0.12 + 0.01 * k

            def anterior(uu, y_lat=y_lat, fall=fall, lw=lung.width):
                f = np.clip((lw - uu) / (lw - 0.25), 0, None)
                return y_lat + fall * f**1.3, -1.3 * fall * f**0.3 / (lw - 0.25)

            box = (y_lat - 0.03, y_lat + fall + 0.05)
            out += _curve_bone(g, side, 0.26, lung.width, anterior, 0.013, 0.12, box)

        def clavicle(uu):
            w = 2 * np.pi / 0.6
            yc = p.clavicle_y - p.clavicle_slope * (uu - 0.03) + 0.012 * np.sin(w * (uu - 0.03))
            return yc, -p.clavicle_slope + 0.012 * w * np.cos(w * (uu - 0.03))

        box = (p.clavicle_y - 0.2 * 0.6 - 0.05, p.clavicle_y + 0.05)
        out += _curve_bone(g, side, 0.03, 0.6, clavicle, 0.016, 0.45, box)
        # Scapula: a thin plate over the lateral upper chest whose curved medial border shows as
        # a faint edge, fading out towards its lower tip.
        u = side * g.X
        border = _F(0.64) + _F(0.5) * (g.Y - _F(0.3)) ** 2
        across = _smoothstep((u - border) / _F(0.03)) * _smoothstep((_F(0.95) - u) / _F(0.08))
        along = _smoothstep((g.Y - _F(0.13)) / _F(0.05)) * _smoothstep((_F(0.5) - g.Y) / _F(0.15))
        out += _F(0.2) * across * along
    return out


def _abdomen_and_breasts(g: _Grid) -> FloatArray:
    p = g.p
    out = np.zeros((g.size, g.size), np.float32)
    under_right = _smoothstep((g.Y - p.right.floor(-g.X)) / _F(0.03)) * (g.X < 0.15)
    out += _F(0.25) * under_right  # liver
    if p.gastric_bubble:
        r = _ellipse_radius(g, p.left.dome_u + 0.03, p.left.dome_y + 0.06, 0.07, 0.035, 0.0)
        out -= _F(0.6) * np.sqrt(np.clip(1 - r**2, 0, None))
    if p.sex == "F":
        # Breasts: soft mounds over the lower lateral chest, thickest at their convex lower
        # edge and tapering into the chest wall above.
        centre_y = p.right.dome_y - 0.07
        taper = _smoothstep((g.Y - _F(centre_y - 0.14)) / _F(0.16))
        for side in (-1.0, 1.0):
            r = _ellipse_radius(g, side * 0.5, centre_y, 0.27, 0.12, 0.0)
            out += _F(0.4) * np.clip(1 - r**2, 0, None) ** _F(0.4) * taper
    return out


def _vessel_tree(g: _Grid, rng: np.random.Generator) -> list[tuple[float, ...]]:
    """Segments (x0, y0, x1, y1, width) of branching, tapering, gently curving trees from each
    hilum; each branch is drawn as three short segments with a wandering heading."""
    segments: list[tuple[float, ...]] = []
    for side, lung in ((-1.0, g.p.right), (1.0, g.p.left)):
        hx, hy = side * (lung.medial + 0.05), lung.apex_y + 0.33
        for angle in np.linspace(-60, 75, 8) + rng.normal(0, 6, 8):
            stack = [(hx, hy, math.radians(angle), rng.uniform(0.1, 0.16), 0.009, 0)]
            while stack:
                x1, y1, a, length, width, level = stack.pop()
                for _ in range(3):
                    x0, y0 = x1, y1
                    a += math.radians(rng.normal(0, 9))
                    x1 = x0 + side * length / 3 * math.cos(a)
                    y1 = y0 + length / 3 * math.sin(a)
                    segments.append((x0, y0, x1, y1, width))
                    width *= 0.92
                if level < 3:
                    for turn in (-1, 1):
                        a2 = a + turn * math.radians(rng.uniform(12, 35))
                        scale = rng.uniform(0.55, 0.8)
                        stack.append((x1, y1, a2, length * scale, width * 0.7, level + 1))
    return segments


def _vessels(g: _Grid, rng: np.random.Generator) -> FloatArray:
    """Pulmonary vessels: each segment a cylinder whose attenuation scales with its width."""
    out = np.zeros((g.size, g.size), np.float32)
    X, Y = np.broadcast_arrays(g.X, g.Y)
    for x0, y0, x1, y1, width in _vessel_tree(g, rng):
        pad = width + 0.004
        rows, cols = g.window(
            min(x0, x1) - pad, max(x0, x1) + pad, min(y0, y1) - pad, max(y0, y1) + pad
        )
        px, py = X[rows, cols], Y[rows, cols]
        if px.size == 0:
            continue
        vx, vy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * vx + (py - y0) * vy) / (vx * vx + vy * vy), 0, 1)
        d2 = (px - x0 - t * vx) ** 2 + (py - y0 - t * vy) ** 2
        radius = width * (1 - 0.08 * t)  # taper along the segment
        profile = np.sqrt(np.clip(1 - d2 / radius**2, 0, None)) * (radius / 0.009)
        np.maximum(out[rows, cols], profile.astype(np.float32), out=out[rows, cols])
    # Vessels run in and out of the projection plane: soften them rather than draw lines.
    return _F(0.5) * ndimage.gaussian_filter(out, 0.0015 * g.size)


def _texture(g: _Grid, rng: np.random.Generator) -> FloatArray:
    """Fine parenchymal texture, drawn on fixed grids so it does not depend on the render size."""

    def blobs(n: int, sigma: float) -> FloatArray:
        field = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
        return resize((field / field.std()).astype(np.float32), g.size)

    return _F(0.05) * blobs(160, 1.2) + _F(0.06) * blobs(32, 2.0)


def _collimation(g: _Grid) -> FloatArray:
    top, bottom, left, right = g.p.collimation
    edge = _F(1.5 / g.size)
    inside = (
        _smoothstep((g.y - _F(top)) / edge)
        * _smoothstep((_F(1 - bottom) - g.y) / edge)
        * _smoothstep((g.x - _F(-1 + 2 * left)) / (2 * edge))
        * _smoothstep((_F(1 - 2 * right) - g.x) / (2 * edge))
    )
    return np.asarray(_F(COLLIMATED) * (1 - inside), dtype=np.float32)


def lung_mask(patient: Patient, size: int) -> FloatArray:
    """Soft mask (0..1) of the visible lung fields on a ``size`` x ``size`` grid."""
    return _lungs(_Grid(patient, size))[1]


def render_attenuation(patient: Patient, size: int) -> FloatArray:
    """The attenuation line-integral map of ``patient`` on a ``size`` x ``size`` grid (float32).

    Example::

        a = render_attenuation(sample_patient(np.random.default_rng(0), label=0), 512)
        transmitted = np.exp(-a)
    """
    g = _Grid(patient, size)
    rng = np.random.default_rng(patient.texture_seed)
    depth, lungs = _lungs(g)
    soft = _soft_tissue(g)
    inside_body = np.clip(soft * _F(1.5), 0.0, 1.0)  # no bone where there is no body
    a = soft + _abdomen_and_breasts(g) + _trachea(g)
    a += inside_body * (_spine(g) + _ribs_and_shoulders(g))
    parenchyma = _vessels(g, rng) + _texture(g, rng) - _F(patient.lung_air)
    a += depth * parenchyma
    for finding in patient.findings:
        a += lungs * finding.render(g.X, g.Y)
    a = np.maximum(a, 0.0) + _F(0.05)  # table and detector cover
    return np.maximum(a, _collimation(g)).astype(np.float32)


__all__ = ["COLLIMATED", "Lung", "lung_mask", "render_attenuation"]
