"""The fake-image pool: size, the published swap rule, seeding and its state round trip."""

from __future__ import annotations

import io

import pytest
import torch

from harmonize.errors import ConfigError
from harmonize.gan.pool import ImagePool


def _image(value: float) -> torch.Tensor:
    return torch.full((1, 1, 2, 2), value)


def test_pool_of_size_zero_returns_its_input() -> None:
    pool = ImagePool(0)
    images = torch.rand(3, 1, 4, 4)
    assert pool.query(images) is images and len(pool) == 0


def test_pool_keeps_at_most_its_size_and_returns_history_or_the_new_image() -> None:
    pool = ImagePool(50, seed=0)
    seen: set[float] = set()
    swapped = 0
    for i in range(450):
        out = pool.query(_image(float(i)))
        value = float(out[0, 0, 0, 0])
        assert out.shape == (1, 1, 2, 2) and len(pool) == min(i + 1, 50)
        if i < 50:
            assert value == i  # filling: every image is stored and returned
        else:
            assert value == i or value in seen
            swapped += value != i
        seen.add(float(i))
    assert len({float(im[0, 0, 0]) for im in pool.images}) == 50
    assert abs(swapped / 400 - 0.5) < 0.1  # the published rule: swap with probability 1/2


def test_pool_is_seeded_and_its_state_round_trips(tmp_path) -> None:
    def stream(pool: ImagePool, start: int, n: int) -> list[float]:
        return [float(pool.query(_image(float(i)))[0, 0, 0, 0]) for i in range(start, start + n)]

    first, second, other = ImagePool(5, seed=1), ImagePool(5, seed=1), ImagePool(5, seed=2)
    assert stream(first, 0, 40) == stream(second, 0, 40)
    assert stream(other, 0, 40) != stream(ImagePool(5, seed=1), 0, 40)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    restored = ImagePool(5, seed=99)
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert stream(restored, 40, 30) == stream(first, 40, 30)
    with pytest.raises(ConfigError, match="pool_size"):
        ImagePool(6).load_state_dict(first.state_dict())
