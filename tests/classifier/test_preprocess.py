"""The classifier's one preprocessing path: short side resized, center square, 16-bit levels."""

from __future__ import annotations

import numpy as np
import pytest

from harmonize.classifier.preprocess import center_square, classifier_levels, levels_to_model
from harmonize.errors import ModelError
from harmonize.imaging.preprocess import resize_short_side, to_model_range, to_uint16


def test_preprocessing_resizes_the_short_side_and_center_crops_to_a_square() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((90, 60), dtype=np.float32)
    levels = classifier_levels(image, 40)
    resized = resize_short_side(image, 40)
    assert resized.shape == (60, 40) and levels.shape == (40, 40) and levels.dtype == np.uint16
    np.testing.assert_array_equal(levels, to_uint16(resized[10:50]))
    x = levels_to_model(levels)
    np.testing.assert_allclose(x.numpy(), to_model_range(resized[10:50]), atol=2e-5)
    assert center_square(np.ones((3, 5)), 4).shape == (4, 4)  # padded where too small
    with pytest.raises(ModelError, match="2-D"):
        classifier_levels(np.zeros((2, 8, 8)), 32)
