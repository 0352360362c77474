"""Procedural chest anatomy: one patient's geometry as a small set of numbers, sampled per patient.

Coordinates are the patient's, normalised: ``X`` runs across the image from -1 (viewer's left =
patient's right in a PA view) to +1, ``Y`` runs down from 0 (above the lung apices) to 1 (upper
abdomen). The patient is placed in the image by ``scale``, ``shift_x``, ``shift_y`` and
``tilt_deg``.
Rendering (``render.py``) is a pure function of a :class:`Patient`; every random choice, texture
included, is made here, so one patient renders identically at every matrix and on every site.

The distribution sampled here is the same for every site: sites differ only in acquisition
(``profiles.py`` and ``detector.py``), which is what harmonization has to undo.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from harmonize.synth.findings import Finding, sample_findings


@dataclass(frozen=True)
class Lung:
    """Outline of one lung field in patient coordinates, ``u = |X|`` measured from the midline."""

    apex_y: float  # top of the apex
    width: float  # lateral extent (u) at the base
    medial: float  # medial border (u) next to the mediastinum
    dome_y: float  # top of the diaphragm dome under this lung
    dome_u: float  # u of the dome's top
    costophrenic_y: float  # lowest point, at the lateral angle

    def lateral(self, y: np.ndarray) -> np.ndarray:
        """Lateral border ``u`` at height ``y``: closes at the apex, widest near the base."""
        t = np.clip((y - self.apex_y) / (0.72 * (self.costophrenic_y - self.apex_y)), 0.0, 1.0)
        return self.medial + (self.width - self.medial) * np.sqrt(1.0 - (1.0 - t) ** 2)

    def floor(self, u: np.ndarray) -> np.ndarray:
        """Diaphragm height under ``u``: a dome rising from the costophrenic angle."""
        lateral = (u - self.dome_u) / max(self.width - self.dome_u, 1e-3)
        medial = (self.dome_u - u) / max(self.dome_u, 1e-3)
        rise = np.where(
            u >= self.dome_u,
            (self.costophrenic_y - self.dome_y) * lateral**2,
            0.05 * medial**2,
        )
        return np.asarray(self.dome_y + rise)

    def contains(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(
            (y > self.apex_y) & (u > self.medial) & (u < self.lateral(y)) & (y < self.floor(u))
        )


@dataclass(frozen=True)
class Patient:
    """Everything that makes one synthetic chest different from another (see module docstring)."""

    sex: Literal["M", "F"]
    age: int
    scale: float  # thorax size relative to the field
    shift_x: float
    shift_y: float
    tilt_deg: float
    habitus: float  # soft-tissue thickness factor
    lung_air: float  # attenuation removed by air at full lung depth
    right: Lung  # patient's right = image left
    left: Lung
    heart_x: float
    heart_y: float
    heart_a: float  # half-width of the cardiac silhouette
    heart_b: float
    heart_angle_deg: float
    rib_start: float
    rib_spacing: float
    rib_half: float  # half-thickness of a posterior rib
    rib_drop: float  # how steeply the posterior ribs fall laterally (1 = typical)
    clavicle_y: float
    clavicle_slope: float
    gastric_bubble: bool
    collimation: tuple[float, float, float, float]  # top, bottom, left, right margins (image)
    texture_seed: int
    findings: tuple[Finding, ...] = ()

    @property
    def label(self) -> int:
        """1 when the patient has TB-like findings, else 0."""
        return int(bool(self.findings))


def sample_patient(rng: np.random.Generator, label: int, lesion_strength: float = 1.0) -> Patient:
    """Draw one patient; ``label=1`` adds TB-like findings of strength ``lesion_strength``.

    Example::

        patient = sample_patient(np.random.default_rng(0), label=1)
    """
    u = rng.uniform
    apex = u(0.09, 0.13)
    cp = u(0.74, 0.81)
    dome_r = cp - u(0.07, 0.11)
    dome_l = dome_r + u(0.0, 0.035)
    width = u(0.72, 0.82)
    right = Lung(apex, width, u(0.09, 0.12), dome_r, u(0.36, 0.46) * width, cp)
    left = Lung(
        apex + u(0.0, 0.015),
        width * u(0.95, 1.0),
        u(0.09, 0.12),
        dome_l,
        u(0.4, 0.5) * width,
        cp + u(0.0, 0.02),
    )

    def margin() -> float:
        return 0.0 if rng.random() < 0.5 else u(0.0, 0.07)

    collimation = (margin(), margin(), margin(), margin())
    sex: Literal["M", "F"] = "F" if rng.random() < 0.5 else "M"
    base = Patient(
        sex=sex,
        age=int(rng.integers(18, 86)),
        scale=u(0.88, 1.05),
        shift_x=rng.normal(0.0, 0.02),
        shift_y=u(-0.03, 0.04),
        tilt_deg=rng.normal(0.0, 1.5),
        habitus=u(0.85, 1.2),
        lung_air=u(1.9, 2.4),
        right=right,
        left=left,
        heart_x=u(0.1, 0.15),
        heart_y=dome_l - u(0.03, 0.06),
        heart_a=u(0.27, 0.33),
        heart_b=u(0.14, 0.17),
        heart_angle_deg=u(20.0, 35.0),
        rib_start=apex + u(-0.03, -0.005),
        rib_spacing=u(0.056, 0.066),
        rib_half=u(0.010, 0.013),
        rib_drop=u(0.8, 1.25),
        clavicle_y=apex + u(0.06, 0.1),
        clavicle_slope=u(0.06, 0.2),
        gastric_bubble=bool(rng.random() < 0.6),
        collimation=collimation,
        texture_seed=int(rng.integers(0, 2**31)),
    )
    if not label:
        return base
    findings = sample_findings(rng, (base.right, base.left), lesion_strength)
    return replace(base, findings=findings)
