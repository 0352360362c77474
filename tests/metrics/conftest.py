"""Fixtures of the metric tests: the two real CR radiographs of pydicom-data."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest


@pytest.fixture(scope="module")
def radiographs() -> list[np.ndarray]:
    """The two real CR radiographs of pydicom-data, scaled to [0, 1], downsampled 3x, cropped."""
    get_testdata_file = pytest.importorskip("pydicom.data").get_testdata_file
    images = []
    for name in ("RG3_UNCI.dcm", "RG1_UNCI.dcm"):
        pixels = pydicom.dcmread(get_testdata_file(name)).pixel_array.astype(np.float64)
        pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min())
        images.append(pixels[::3, ::3][:512, :448])  # not square: catches transposed axes
    return images
