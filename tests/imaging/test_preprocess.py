"""Preprocessing: exact inverses (value range, padding, 16-bit levels), antialiasing, crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harmonize.errors import HarmonizeError
from harmonize.imaging.preprocess import (
    Padding,
    from_model_range,
    from_uint16,
    pad_to_multiple,
    random_crop,
    resize_short_side,
    resized_shape,
    to_model_range,
    to_uint16,
    training_image,
    unpad,
)


def test_model_range_maps_the_display_range_onto_minus_one_one_and_back() -> None:
    display = np.array([0.0, 0.25, 0.5, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(to_model_range(display), [-1.0, -0.5, 0.0, 1.0])
    x = np.random.default_rng(0).random(10_000, dtype=np.float32)
    back = from_model_range(to_model_range(x))
    assert back.dtype == np.float32
    assert np.abs(back - x).max() <= 2.0**-24  # float32 rounding of 2x - 1 near -1, no more
    t = torch.from_numpy(x)
    assert torch.equal(from_model_range(to_model_range(t)), torch.from_numpy(back))


def test_uint16_levels_round_trip_within_half_a_level() -> None:
    x = np.random.default_rng(1).random((50, 60)).astype(np.float32)
    levels = to_uint16(x)
    assert levels.dtype == np.uint16
    assert np.abs(from_uint16(levels) - x).max() <= 0.5 / 65535 + 1e-7
    np.testing.assert_array_equal(to_uint16(from_uint16(levels)), levels)  # exact on levels
    np.testing.assert_array_equal(to_uint16(np.array([-0.5, 0.0, 1.0, 2.0])), [0, 0, 65535, 65535])


@pytest.mark.parametrize("shape", [(30, 45), (32, 48), (3, 33, 29), (2, 1, 17, 4)])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "constant"])
def test_pad_to_multiple_and_unpad_are_exact_inverses(shape, mode) -> None:
    image = np.random.default_rng(2).random(shape).astype(np.float32)
    for array in (image, torch.from_numpy(image)):
        padded, padding = pad_to_multiple(array, 4, mode=mode)
        assert padded.shape[-2] % 4 == 0 and padded.shape[-1] % 4 == 0
        assert padded.shape[-2] - shape[-2] == padding.bottom < 4
        assert padded.shape[-1] - shape[-1] == padding.right < 4
        restored = unpad(padded, padding)
        np.testing.assert_array_equal(np.asarray(restored), image)


def test_pad_values_follow_the_mode() -> None:
    image = np.arange(30, dtype=np.float32).reshape(5, 6)
    reflect, padding = pad_to_multiple(image, 4)
    assert padding == Padding(bottom=3, right=2)
    np.testing.assert_array_equal(reflect[5:, :6], image[3:0:-1])  # rows 3, 2, 1 mirrored
    torch_reflect, _ = pad_to_multiple(torch.from_numpy(image), 4)
    np.testing.assert_array_equal(torch_reflect.numpy(), reflect)
    constant, _ = pad_to_multiple(image, 4, mode="constant")
    assert (constant[5:] == 0).all() and (constant[:, 6:] == 0).all()


def test_pad_is_a_no_op_on_divisible_sizes_and_rejects_bad_requests() -> None:
    image = np.zeros((8, 12), dtype=np.float32)
    padded, padding = pad_to_multiple(image, 4)
    assert padded is image and padding == Padding(0, 0)
    with pytest.raises(HarmonizeError, match="replicate"):
        pad_to_multiple(np.zeros((2, 2)), 4)  # 2 rows cannot reflect 2 more
    with pytest.raises(HarmonizeError, match="positive"):
        pad_to_multiple(image, 0)


def test_resize_short_side_keeps_aspect_ratio_and_range() -> None:
    rng = np.random.default_rng(3)
    image = (rng.random((200, 300)) * 0.6 + 0.2).astype(np.float32)
    out = resize_short_side(image, 64)
    assert out.shape == (64, 96) and out.dtype == np.float32
    assert out.min() >= image.min() and out.max() <= image.max()
    assert resize_short_side(image.T, 64).shape == (96, 64)
    assert resized_shape(2048, 2500, 286) == (286, 349)
    flat = np.full((90, 70), 0.3, dtype=np.float32)
    np.testing.assert_allclose(resize_short_side(flat, 30), 0.3, atol=1e-7)
    up = resize_short_side(image[:50, :60], 100)  # upsampling works too
    assert up.shape == (100, 120) and image.min() <= up.min() and up.max() <= image.max()


def test_resize_is_antialiased() -> None:
    # A 1-pixel checkerboard has mean 0.5 and no low frequencies: shrinking it 4x must give a
    # flat grey, where point sampling would give pure 0 or pure 1.
    checker = (np.indices((256, 256)).sum(axis=0) % 2).astype(np.float32)
    out = resize_short_side(checker, 64)
    np.testing.assert_allclose(out, 0.5, atol=0.02)


def test_training_image_is_resized_16_bit() -> None:
    image = np.random.default_rng(4).random((120, 100)).astype(np.float32)
    levels = training_image(image, 50)
    assert levels.dtype == np.uint16 and levels.shape == (60, 50)
    np.testing.assert_array_equal(levels, to_uint16(resize_short_side(image, 50)))


def test_random_crop_is_a_seeded_window_of_the_image() -> None:
    image = np.arange(20 * 30).reshape(20, 30)
    crop = random_crop(image, 8, np.random.default_rng(5))
    assert crop.shape == (8, 8)
    top, left = divmod(int(crop[0, 0]), 30)
    np.testing.assert_array_equal(crop, image[top : top + 8, left : left + 8])
    np.testing.assert_array_equal(crop, random_crop(image, 8, np.random.default_rng(5)))
    corners = {int(random_crop(image, 8, np.random.default_rng(s))[0, 0]) for s in range(200)}
    assert len(corners) > 50  # positions vary over the whole valid range
    assert max(c // 30 for c in corners) <= 12 and max(c % 30 for c in corners) <= 22
    with pytest.raises(HarmonizeError, match="load size"):
        random_crop(image, 21, np.random.default_rng(0))
