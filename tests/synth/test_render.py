"""Rendering: the anatomy looks like a chest radiograph; findings change only the lungs."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pydicom
import pytest

from harmonize.synth import (
    PROFILES,
    lung_mask,
    render_attenuation,
    sample_patient,
    synthesize_image,
)

from conftest import REAL_PNG_DIR, display

REAL_PNGS = REAL_PNG_DIR
MATRIX = 256


@pytest.mark.parametrize("name", ["shenzhen-like", "mc-like"])
def test_display_looks_like_a_chest_radiograph(name: str) -> None:
    image = synthesize_image(PROFILES[name], 11, 0, 0, matrix=MATRIX)
    shown = display(pydicom.dcmread(io.BytesIO(image.dicom)))
    lungs = lung_mask(image.patient, MATRIX) > 0.9
    centre = MATRIX // 2
    spine = shown[int(0.3 * MATRIX) : int(0.5 * MATRIX), centre - 3 : centre + 3]
    assert lungs.mean() > 0.15
    assert shown[lungs].mean() + 0.1 < spine.mean()  # dark lungs, bright mediastinum and spine


def test_findings_change_only_the_lungs() -> None:
    for seed in range(4):
        normal = sample_patient(np.random.default_rng(seed), 0)
        sick = sample_patient(np.random.default_rng(seed), 1)
        assert normal.label == 0 and sick.label == 1
        assert dataclasses.replace(sick, findings=()) == normal  # same anatomy
        diff = render_attenuation(sick, MATRIX) - render_attenuation(normal, MATRIX)
        lungs = lung_mask(normal, MATRIX)
        assert np.abs(diff[lungs == 0]).max() == 0  # findings stay inside the lung fields
        assert np.abs(diff[lungs > 0.5]).max() > 0.2  # visible: > 20 % change in transmission
        hidden = sample_patient(np.random.default_rng(seed), 1, lesion_strength=0.0)
        np.testing.assert_array_equal(
            render_attenuation(hidden, 64), render_attenuation(normal, 64)
        )


def test_lesion_images_differ_from_normal_in_the_lung_after_acquisition() -> None:
    profile = PROFILES["shenzhen-like"]
    gaps = []
    for index in range(4):
        sick = synthesize_image(profile, 9, index, 1, matrix=MATRIX, paired=True)
        well = synthesize_image(profile, 9, index, 0, matrix=MATRIX, paired=True)
        lungs = lung_mask(well.patient, MATRIX) > 0.5
        delta = np.abs(sick.pixels.astype(float) - well.pixels.astype(float))
        gaps.append(np.percentile(delta[lungs], 99.5) - np.percentile(delta[~lungs], 99.5))
    assert min(gaps) > 0.02 * profile.max_stored
