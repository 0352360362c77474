"""Learning-rate schedules of the GAN recipes, as per-step factors for ``LambdaLR``.

Each is a plain function, so a scheduler's state_dict holds only its step count: resuming with
another training length follows the new schedule.

Example::

    scheduler = LambdaLR(optimizer, linear_decay(steps=1000, decay_start=500))
"""

from __future__ import annotations

from collections.abc import Callable

from harmonize.errors import ConfigError


def linear_decay(steps: int, decay_start: int) -> Callable[[int], float]:
    """The LR factor per step: 1 until ``decay_start``, then linearly down to 0 at ``steps``
    (CycleGAN's schedule)."""
    if not 0 <= decay_start <= steps:
        raise ConfigError(f"decay_start must be in 0..steps ({steps}), got {decay_start}")

    def factor(step: int) -> float:
        if step < decay_start:
            return 1.0
        if step >= steps:  # also where decay_start == steps: no decay, and no division by 0
            return 0.0
        return (steps - step) / (steps - decay_start)

    return factor


def step_decay(step_size: int, gamma: float) -> Callable[[int], float]:
    """The LR factor per step: ``gamma ** (step // step_size)`` (UNIT's schedule)."""

    def factor(step: int) -> float:
        return float(gamma ** (step // step_size))

    return factor
