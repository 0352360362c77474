"""GPU decoding of compressed pixel data (JPEG 2000, HTJ2K, JPEG) through nvImageCodec, in
batches, with the CPU codecs as the fallback.

Used by ``dicom.decode`` when ``nvidia.nvimgcodec`` imports and a CUDA device is present (the
optional extra ``harmonize[gpu]``: nvidia-nvimgcodec-cu13 + nvidia-nvjpeg2k-cu13, NVIDIA
proprietary, freely redistributable, never in the default install). ``gpu_decode_problem()``
says why the GPU path is off (None when it is on). ``stored_pixels_of(datasets)`` decodes the
frames of every GPU-eligible dataset of a batch in one ``decode_frames`` call and checks each
result against its header; it gives ``None`` for each one the GPU did not decode, so that the
caller decodes that one on the CPU: a GPU failure never fails an object. Lossless decodes are
pixel-identical to the CPU codecs (tested where a GPU and nvImageCodec are at hand).
``may_decode_on_gpu(data)`` peeks at an object's transfer syntax, so that a stream can leave
those objects to the process that holds the GPU.
"""

from __future__ import annotations

import functools
import io
import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

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
    try:
        decoder, params = _decoder()
        images = list(decoder.decode([bytes(f) for f in frames], params=params))
        if len(images) != len(frames):
            raise RuntimeError(f"{len(images)} images decoded from {len(frames)} codestreams")
    except Exception:  # noqa: BLE001 - the whole batch falls back to the CPU
        logger.warning("nvImageCodec could not decode a batch of %d", len(frames), exc_info=True)
        return [None] * len(frames)
    if not to_host:
        return images
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


def checked_stored_pixels(
    array: np.ndarray | None, *, rows: int, cols: int, bits_allocated: int
) -> np.ndarray | None:
    """``array``, a frame the GPU decoded, as the stored values its header describes: of shape
    (rows, cols), in an unsigned container of ``bits_allocated``; None (the CPU must decode the
    frame) for a failed decode or an unexpected shape or type."""
    expected = np.uint8 if bits_allocated == 8 else np.uint16
    if array is None or array.shape != (rows, cols) or array.dtype.kind != "u":
        return None
    if array.dtype.itemsize > np.dtype(expected).itemsize:
        return None
    return np.ascontiguousarray(array, dtype=expected)


def stored_pixels_of(datasets: Sequence[Dataset]) -> list[np.ndarray | None]:
    """The stored values of each dataset's single frame, decoded on the GPU: the frames of
    every eligible dataset (a transfer syntax of ``GPU_SYNTAXES``, unsigned pixels) in ONE
    ``decode_frames`` call, each result checked against its header (``checked_stored_pixels``).

    ``datasets`` are checked single-frame grayscale images (``dicom.decode``). Returns one
    entry per dataset: None where the CPU must decode it (GPU decoding unavailable here, a
    syntax or sign the GPU path does not take, an odd encapsulation, a failed or unexpected
    decode).
    """
    out: list[np.ndarray | None] = [None] * len(datasets)
    if not gpu_decode_available():
        return out
    from pydicom.encaps import generate_frames

    picked: list[tuple[int, bytes]] = []
    for index, ds in enumerate(datasets):
        if str(ds.file_meta.TransferSyntaxUID) not in GPU_SYNTAXES:
            continue
        if int(ds.PixelRepresentation) == 1:  # nvImageCodec's sign handling differs: the CPU
            continue
        try:
            picked.append((index, next(generate_frames(ds.PixelData, number_of_frames=1))))
        except Exception:  # noqa: BLE001 - an odd encapsulation: the CPU path decides
            continue
    arrays = decode_frames([frame for _, frame in picked])
    for (index, _), array in zip(picked, arrays, strict=True):
        ds = datasets[index]
        out[index] = checked_stored_pixels(
            array, rows=int(ds.Rows), cols=int(ds.Columns), bits_allocated=int(ds.BitsAllocated)
        )
    return out


def may_decode_on_gpu(data: bytes) -> bool:
    """Whether the object ``data`` may be decoded on a GPU: its file meta names a transfer
    syntax of ``GPU_SYNTAXES``, or it cannot be read (then the decode, wherever it runs, says
    why). A cheap peek: only the file meta is parsed. False for an object without a preamble or
    a transfer syntax in its file meta (the decoder reads it as uncompressed)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # File meta is always read; no dataset element is named, so none is kept.
            ds = pydicom.dcmread(
                io.BytesIO(data), stop_before_pixels=True, specific_tags=["TransferSyntaxUID"]
            )
    except InvalidDicomError:
        return False
    except Exception:  # noqa: BLE001 - unreadable: the decode gives the error row
        return True
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    return tsyntax is not None and str(tsyntax) in GPU_SYNTAXES
