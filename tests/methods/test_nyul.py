"""Nyúl piecewise-linear standardization: identity on its own image, landmarks on the scale."""

from __future__ import annotations

import numpy as np
import pytest

from harmonize.errors import ConfigError
from harmonize.methods.nyul import NyulConfig, NyulStandardization


def test_nyul_is_identity_on_its_only_training_image(sites) -> None:
    target, _ = sites
    model = NyulStandardization().fit([target[0]])
    np.testing.assert_allclose(model.transform(target[0]), target[0], atol=1e-4)


def test_nyul_maps_landmarks_onto_the_standard_scale(sites) -> None:
    target, source = sites
    model = NyulStandardization().fit(target)
    out = model.transform(source[0])
    assert np.abs(model.landmarks(out) - model.standard).max() < 0.01


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="increasing"):
        NyulConfig(percentiles=(1, 50, 40, 99))
