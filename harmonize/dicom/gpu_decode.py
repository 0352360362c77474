"""GPU decoding of compressed pixel data (JPEG 2000, HTJ2K, JPEG) through nvImageCodec, in
batches, with the CPU codecs as the fallback.

Used by ``dicom.decode`` when ``nvidia.nvimgcodec`` imports and a CUDA device is present (the
optional extra ``harmonize[gpu]``: nvidia-nvimgcodec-cu13 + nvidia-nvjpeg2k-cu13, NVIDIA
proprietary, freely redistributable, never in the default install). ``gpu_decode_problem()``
says why the GPU path is off (None when it is on). ``decode_frames`` decodes a batch of
codestreams and gives ``None`` for each one it could not decode, so that the caller decodes that
one on the CPU: a GPU failure never fails an object. Lossless decodes are pixel-identical to the
CPU codecs (tested where a GPU and nvImageCodec are at hand).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CPU, GPU = "cpu", "nvimgcodec"  # the manifest's ``decoder`` values

#: Transfer syntaxes nvImageCodec decodes (JPEG 2000 and HTJ2K through nvJPEG2000, JPEG
#: baseline and lossless through nvJPEG).
GPU_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.57",  # JPEG lossless
        "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
        "1.2.840.10008.1.2.4.203",  # HTJ2K
    }
)


@functools.cache
def gpu_decode_problem() -> str | None:
    """None when GPU decoding is available here, else why not (one sentence)."""
    try:
        from nvidia import nvimgcodec  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except Exception as err:  # noqa: BLE001 - absent or broken install: the CPU decodes
        return (
            f"nvImageCodec is not installed ({type(err).__name__}); install harmonize[gpu] "
            "(nvidia-nvimgcodec-cu13, nvidia-nvjpeg2k-cu13) on a GPU node"
        )
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device is available to nvImageCodec"
    return None


def gpu_decode_available() -> bool:
    return gpu_decode_problem() is None


@functools.cache
def _decoder() -> tuple[Any, Any]:
    from nvidia import nvimgcodec  # type: ignore[import-not-found, unused-ignore]

    params = nvimgcodec.DecodeParams(
        allow_any_depth=True, color_spec=nvimgcodec.ColorSpec.UNCHANGED
    )
    return nvimgcodec.Decoder(), params


def decode_frames(frames: Sequence[bytes], *, to_host: bool = True) -> list[Any]:
    """Decode single-frame grayscale codestreams on the GPU in one batch.

    Returns one entry per frame: with ``to_host`` a (rows, cols) numpy array of the stored
    values (uint8 or uint16), else nvImageCodec's device image; ``None`` where the GPU could
    not decode that frame (decode it on the CPU).
    """
    if not frames:
        return []
    decoder, params = _decoder()
    try:
        images = decoder.decode([bytes(f) for f in frames], params=params)
    except Exception:  # noqa: BLE001 - the whole batch falls back to the CPU
        logger.warning("nvImageCodec could not decode a batch of %d", len(frames), exc_info=True)
        return [None] * len(frames)
    if not to_host:
        return list(images)
    out: list[np.ndarray | None] = []
    for image in images:
        try:
            array = None if image is None else np.asarray(image.cpu())
        except Exception:  # noqa: BLE001 - this frame falls back to the CPU
            array = None
        if array is not None and array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        out.append(array if array is not None and array.ndim == 2 else None)
    return out


def stored_pixels_on_gpu(
    frame: bytes, *, rows: int, cols: int, bits_allocated: int, signed: bool
) -> np.ndarray | None:
    """The stored values of one frame decoded on the GPU, checked against the header (shape,
    an unsigned container of ``bits_allocated``); None when the CPU must decode it (signed
    pixels, a failed decode, an unexpected shape or type)."""
    if signed:  # nvImageCodec's sign handling differs from pydicom's: leave it to the CPU
        return None
    (array,) = decode_frames([frame])
    expected = np.uint8 if bits_allocated == 8 else np.uint16
    if array is None or array.shape != (rows, cols) or array.dtype.kind != "u":
        return None
    if array.dtype.itemsize > np.dtype(expected).itemsize:
        return None
    return np.ascontiguousarray(array, dtype=expected)
