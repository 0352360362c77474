"""Pure image functions between display images and network inputs: value range, resize, crop, pad.

Display images are float32 in [0, 1] (``decode_dicom(...).pixels``); the networks read and write
[-1, 1]. Training images are resized so their short side is ``load_size`` (antialiased, so a
2048-px radiograph does not alias when it shrinks to 286 px) and randomly cropped; inference pads
to a multiple of 4 (the generator's two stride-2 stages) and crops the padding off afterwards.

Example::

    x = to_model_range(resize_short_side(pixels, 286))       # (286, W') in [-1, 1]
    padded, padding = pad_to_multiple(x, 4)
    y = unpad(generator(padded), padding)                      # back to (286, W')
    display = from_model_range(y)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from harmonize.errors import HarmonizeError

Array = TypeVar("Array", np.ndarray, torch.Tensor)
PadMode = Literal["reflect", "replicate", "constant", "auto"]


def to_model_range(image: Array) -> Array:
    """Display values [0, 1] -> model values [-1, 1] (``2x - 1``); numpy or torch, any shape.

    ``from_model_range`` is its inverse up to float rounding (at most 2**-24 in float32).
    """
    return image * 2.0 - 1.0


def from_model_range(image: Array) -> Array:
    """Model values [-1, 1] -> display values [0, 1] (``(x + 1) / 2``); inverse of
    ``to_model_range``. Values are not clipped: clip network outputs where that matters."""
    return (image + 1.0) * 0.5


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """The (height, width) whose short side is ``short_side``, keeping the aspect ratio."""
    if short_side < 1:
        raise HarmonizeError(f"resize size must be a positive number of pixels, got {short_side}")
    if height < 1 or width < 1:
        raise HarmonizeError(f"cannot resize an empty image of {height}x{width}")
    scale = short_side / min(height, width)
    if height <= width:
        return short_side, max(short_side, round(width * scale))
    return max(short_side, round(height * scale)), short_side


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D image so its short side is ``size`` pixels, keeping the aspect ratio.

    Bilinear interpolation with an antialiasing (triangle) filter as wide as the scale factor,
    so shrinking averages every source pixel instead of skipping most of them. Every output value
    is a convex combination of input values; the result is clipped to the input's range so float
    rounding never leaves it. Returns float32.

    Raises:
        HarmonizeError: the image is not 2-D or ``size`` is not positive.
    """
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2 or array.size == 0:
        raise HarmonizeError(f"resize expects one 2-D image, got an array of shape {array.shape}")
    out_shape = resized_shape(array.shape[0], array.shape[1], size)
    if out_shape == array.shape:
        return array.copy()
    # torch wants a writable array (pixels decoded from a buffer are read-only): copy those
    tensor = torch.from_numpy(np.require(array, requirements=["C", "W"]))[None, None]
    resized = F.interpolate(
        tensor, size=out_shape, mode="bilinear", antialias=True, align_corners=False
    )[0, 0].numpy()
    return np.clip(resized, array.min(), array.max())


def crop_offsets(shape: tuple[int, ...], size: int, rng: np.random.Generator) -> tuple[int, int]:
    """The (top, left) of a ``size`` x ``size`` window at a uniformly random position of an
    image of ``shape`` (its last two sizes): the draws ``random_crop`` makes.

    Raises:
        HarmonizeError: the image is smaller than the crop.
    """
    height, width = shape[-2:]
    if size < 1 or size > height or size > width:
        raise HarmonizeError(
            f"cannot crop {size}x{size} from an image of {height}x{width}; use a crop size of at "
            f"most {min(height, width)} or a larger load size"
        )
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` window of a 2-D image at a uniformly random position (a view).

    Raises:
        HarmonizeError: the image is smaller than the crop.
    """
    top, left = crop_offsets(image.shape, size, rng)
    return image[..., top : top + size, left : left + size]


@dataclass(frozen=True)
class Padding:
    """What ``pad_to_multiple`` added: rows at the bottom, columns at the right."""

    bottom: int
    right: int


def pad_to_multiple(
    image: Array, multiple: int, mode: PadMode = "reflect"
) -> tuple[Array, Padding]:
    """Pad the last two axes at the bottom and right up to multiples of ``multiple``.

    Args:
        image: numpy array or torch tensor of shape (..., H, W).
        multiple: the divisor the padded height and width must have (4 for the ResNet
            generator's two stride-2 stages).
        mode: ``reflect`` (default: mirrored anatomy, no artificial edge for the network),
            ``replicate``, ``constant`` (zeros), or ``auto``: reflect where the image is large
            enough, else replicate (the generators at inference, which see any image size).

    Returns:
        The padded image (the input itself when nothing is needed) and the ``Padding`` that
        ``unpad`` removes.

    Raises:
        HarmonizeError: ``multiple`` < 1, or reflect padding wider than the image.
    """
    if multiple < 1:
        raise HarmonizeError(f"pad multiple must be a positive integer, got {multiple}")
    if image.ndim < 2:
        raise HarmonizeError(f"pad expects an image (..., H, W), got shape {tuple(image.shape)}")
    height, width = image.shape[-2:]
    padding = Padding(bottom=-height % multiple, right=-width % multiple)
    if padding.bottom == 0 and padding.right == 0:
        return image, padding
    if mode == "auto":
        mode = "reflect" if padding.bottom < height and padding.right < width else "replicate"
    if mode == "reflect" and (padding.bottom >= height or padding.right >= width):
        raise HarmonizeError(
            f"cannot reflect-pad an image of {height}x{width} to a multiple of {multiple}; "
            'use mode="replicate" for images this small'
        )
    if isinstance(image, torch.Tensor):
        lead = image.shape[:-2]
        flat = image.reshape(-1, 1, height, width)
        if mode == "constant":
            padded = F.pad(flat, (0, padding.right, 0, padding.bottom))
        else:
            padded = F.pad(flat, (0, padding.right, 0, padding.bottom), mode=mode)
        return padded.reshape(*lead, *padded.shape[-2:]), padding
    widths = [(0, 0)] * (image.ndim - 2) + [(0, padding.bottom), (0, padding.right)]
    if mode == "reflect":
        return np.pad(image, widths, mode="reflect"), padding
    if mode == "replicate":
        return np.pad(image, widths, mode="edge"), padding
    return np.pad(image, widths, mode="constant"), padding


def unpad(image: Array, padding: Padding) -> Array:
    """Remove what ``pad_to_multiple`` added (a view): its exact inverse."""
    height, width = image.shape[-2:]
    return image[..., : height - padding.bottom, : width - padding.right]


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Display values [0, 1] as 16-bit grey levels (clipped, rounded): compact training storage
    with a quantisation error below 1e-5, finer than any stored DICOM pixel."""
    return (np.clip(image, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


def from_uint16(levels: np.ndarray) -> np.ndarray:
    """16-bit grey levels -> display values [0, 1], float32; inverse of ``to_uint16``."""
    return levels.astype(np.float32) / np.float32(65535.0)


def training_image(pixels: np.ndarray, load_size: int) -> np.ndarray:
    """A decoded display image as kept for training: short side ``load_size``, 16-bit levels."""
    return to_uint16(resize_short_side(pixels, load_size))
