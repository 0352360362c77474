"""The learning-rate schedules' factors per step."""

from __future__ import annotations

import pytest

from harmonize.errors import ConfigError
from harmonize.gan.schedules import linear_decay, step_decay


def test_linear_decay_is_constant_then_falls_linearly_to_zero() -> None:
    factor = linear_decay(100, 50)
    assert [factor(s) for s in (0, 49, 50, 75, 100)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    no_decay = linear_decay(10, 10)
    assert [no_decay(s) for s in (0, 9, 10, 11)] == [1.0, 1.0, 0.0, 0.0]  # steps: 0, as always
    assert linear_decay(0, 0)(0) == 0.0
    with pytest.raises(ConfigError, match="decay_start"):
        linear_decay(10, 11)


def test_step_decay_multiplies_by_gamma_every_step_size_steps() -> None:
    factor = step_decay(3, 0.5)
    assert [factor(s) for s in (0, 2, 3, 5, 6, 9)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]
