"""Pixel values: a source image's stored values to display intensities in [0, 1], and back.

Decoding follows the DICOM grayscale pipeline (PS3.3 C.11 and PS3.4 N.2): stored values ->
Modality LUT (rescale or Modality LUT Sequence) -> VOI (VOI LUT Sequence, else the first window,
else the image's min..max) -> [0, 1] -> inverted for MONOCHROME1, so 1 is always the brightest
value on screen. A derived image stores display intensities with a full-range linear window:
`display_to_stored` quantises them and `stored_to_display` is its inverse, so decoding the derived
file gives back the harmonized pixels to within one quantisation step.

Example::

    display, voi_kind, center, width = apply_grayscale_pipeline(ds.pixel_array, ds)
    stored = display_to_stored(display, bits_stored=12, photometric="MONOCHROME2")
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi

from harmonize.errors import DicomError

VoiKind = Literal["lut", "window", "minmax"]

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")


def apply_grayscale_pipeline(
    stored: np.ndarray, ds: Dataset
) -> tuple[np.ndarray, VoiKind, float, float]:
    """Stored values -> display intensities in [0, 1] (1 = brightest) by the dataset's LUTs.

    Returns:
        (display, voi_kind, center, width): contiguous float32 pixels; how the VOI was applied;
        the window applied in modality units (the image's midpoint and range for ``"minmax"``,
        NaN for ``"lut"``).

    Raises:
        DicomError: invalid rescale / Modality LUT attributes or an invalid VOI LUT Sequence.
    """
    values = _apply_modality(stored, ds)
    display, voi_kind, center, width = _apply_voi(values, ds)
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        display = 1.0 - display
    display = np.ascontiguousarray(display, dtype=np.float32)
    return display, voi_kind, center, width


def _apply_modality(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> modality values (rescale or Modality LUT Sequence), via pydicom."""
    try:
        return apply_modality_lut(stored, ds)
    except Exception as err:
        raise DicomError(
            f"the Modality LUT / rescale attributes are invalid ({type(err).__name__}: {err}); "
            "fix RescaleSlope/RescaleIntercept or the Modality LUT Sequence"
        ) from err


def _apply_voi(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray, VoiKind, float, float]:
    """Modality values -> [0, 1] (MONOCHROME2 sense not yet applied), and how it was done."""
    if ds.get("VOILUTSequence"):
        return _apply_voi_lut_sequence(values, ds), "lut", math.nan, math.nan
    window = _first_window(ds)
    if window is not None:
        center, width, function = window
        return window_to_unit(values, center, width, function), "window", center, width
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    x = values.astype(np.float32)
    unit = (x - np.float32(lo)) / np.float32(span) if span > 0 else np.zeros_like(x)
    return unit, "minmax", (lo + hi) / 2.0, span


def _apply_voi_lut_sequence(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply the first VOI LUT with pydicom and scale by the LUT's output range."""
    if values.dtype.kind == "f":
        # LUTs index integers; rescaled values are integral in practice.
        values = np.rint(values).astype(np.int64)
    try:
        out = apply_voi(values, ds, index=0)
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        bits = int(descriptor[2])
    except Exception as err:
        raise DicomError(
            f"the VOI LUT Sequence is invalid ({type(err).__name__}: {err}); fix or remove it "
            "(the window or the image's min..max is used instead)"
        ) from err
    # Some writers declare 16 bits but fill fewer (or the reverse); trust the data if it exceeds.
    top = int(out.max()) if out.size else 0
    bits = max(bits, top.bit_length())
    return out.astype(np.float32) / np.float32(2**bits - 1)


def _first_window(ds: Dataset) -> tuple[float, float, str] | None:
    """(center, width, VOI LUT function) of the first usable window, else None."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        centers, widths = ds["WindowCenter"], ds["WindowWidth"]
        center = float(centers.value[0] if centers.VM > 1 else centers.value)
        width = float(widths.value[0] if widths.VM > 1 else widths.value)
    except (TypeError, ValueError, IndexError):
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    min_width = 1.0 if function == "LINEAR" else 0.0
    if not (math.isfinite(center) and math.isfinite(width)) or width < min_width or width == 0:
        return None  # an unusable window: the caller falls back to min..max
    return center, width, function


def window_to_unit(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Apply a VOI window (PS3.3 C.11.2.1.2) with output range [0, 1], as float32.

    Equal to pydicom's ``apply_windowing`` divided by its output range, but in float32 and with an
    output range that does not depend on rescale attributes (pydicom's does, and flips for a
    negative slope).
    """
    x = values.astype(np.float32, copy=False)
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - np.float32(center)) / np.float32(width)))).astype(
            np.float32
        )
    if function == "LINEAR_EXACT":
        y = (x - np.float32(center)) / np.float32(width) + np.float32(0.5)
    elif width == 1:  # LINEAR with width 1 is a threshold at center - 0.5
        return (x > np.float32(center - 0.5)).astype(np.float32)
    else:  # LINEAR
        y = (x - np.float32(center - 0.5)) / np.float32(width - 1) + np.float32(0.5)
    return np.clip(y, 0.0, 1.0, out=y)


def display_to_stored(
    pixels: np.ndarray, bits_stored: int, photometric: str, *, bits_allocated: int | None = None
) -> np.ndarray:
    """Quantise display intensities in [0, 1] to unsigned stored values of ``bits_stored`` bits.

    MONOCHROME1 stores inverted values (0 display -> the largest stored value). Values outside
    [0, 1] are clipped. The dtype is uint8 for 8 bits allocated, else uint16; ``bits_allocated``
    defaults to the smallest of 8 and 16 that holds ``bits_stored``.
    """
    if photometric not in MONOCHROME:
        raise DicomError(f"photometric {photometric!r} is not MONOCHROME1 or MONOCHROME2")
    allocated = bits_allocated or (8 if bits_stored <= 8 else 16)
    if allocated not in (8, 16) or not 1 <= bits_stored <= allocated:
        raise DicomError(
            f"bits_stored {bits_stored} with bits_allocated {allocated} is not supported; "
            "use 1..8 bits in 8 or 1..16 bits in 16"
        )
    top = float(2**bits_stored - 1)
    unit = np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0)
    stored = np.rint(unit * top)
    if photometric == "MONOCHROME1":
        stored = top - stored
    return stored.astype(np.uint8 if allocated == 8 else np.uint16)


def stored_to_display(stored: np.ndarray, bits_stored: int, photometric: str) -> np.ndarray:
    """The exact inverse of `display_to_stored` (up to quantisation), as float32 in [0, 1]."""
    top = np.float32(2**bits_stored - 1)
    unit = np.asarray(stored, dtype=np.float32) / top
    return (1.0 - unit) if photometric == "MONOCHROME1" else unit
