"""The classifier's one preprocessing path, the same in training and in scoring.

Every image goes through ``classifier_levels`` (display [0, 1] -> short side ``input_size`` ->
center crop to a square -> 16-bit levels, as the training data keeps it) and ``levels_to_model``
(-> [-1, 1], what the network sees).
"""

from __future__ import annotations

import numpy as np
import torch

from harmonize.imaging.preprocess import from_uint16, resize_short_side, to_model_range, to_uint16
from harmonize.methods.base import check_display_image


def center_square(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` window of a 2-D image (edge-padded where a side is
    shorter, which ``resize_short_side`` never leaves)."""
    height, width = image.shape
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if pad_h or pad_w:
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        image = np.pad(image, pads, mode="edge")
        height, width = image.shape
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def classifier_levels(image: np.ndarray, input_size: int) -> np.ndarray:
    """A display image [0, 1] (any size) as the classifier keeps it: short side resized to
    ``input_size`` (antialiased), center-cropped to a square, 16-bit levels (error < 1e-5).

    Raises:
        ModelError: the image is not one 2-D array.
    """
    pixels = check_display_image(image)
    return to_uint16(center_square(resize_short_side(pixels, input_size), input_size))


def levels_to_model(levels: np.ndarray) -> torch.Tensor:
    """16-bit levels (..., S, S) -> float32 model values [-1, 1] (a new CPU tensor)."""
    return torch.from_numpy(to_model_range(from_uint16(levels)))
