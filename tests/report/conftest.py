"""Fixtures of the report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harmonize.methods.histogram import HistogramMatching

from report_samples import TARGET_HIST


@pytest.fixture()
def model_dir(tmp_path: Path) -> str:
    """A real fitted histogram-matching model whose card carries TARGET_HIST."""
    uri = str(tmp_path / "model")
    image = np.linspace(0.0, 1.0, 256, dtype=np.float32).reshape(16, 16)
    HistogramMatching().fit([image]).save(uri, card={"target_histogram": TARGET_HIST})
    return uri
