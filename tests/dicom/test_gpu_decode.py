"""GPU decoding through nvImageCodec: used when it can be, the CPU otherwise and per object on
any GPU failure; lossless GPU decodes equal the CPU's (where a GPU and nvImageCodec are here)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from harmonize.dicom import gpu_decode
from harmonize.dicom.decode import decode_dicom
from harmonize.io.manifest import COLUMNS

from dicom_samples import make_image, random_values

PROBLEM = gpu_decode.gpu_decode_problem()


def _j2k(bits: int, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """A JPEG 2000 lossless image of ``bits`` stored bits and its stored values."""
    values = random_values(bits, False, shape=(96, 128), seed=seed)
    ds = pydicom.dcmread(io.BytesIO(make_image(values, bits)))
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), values


def test_the_decoder_is_named_and_the_manifest_records_it() -> None:
    data, values = _j2k(12)
    image = decode_dicom(data)
    assert image.decoder == (gpu_decode.CPU if PROBLEM else gpu_decode.GPU)
    cpu = pydicom.dcmread(io.BytesIO(data)).pixel_array
    assert np.array_equal(cpu, values)  # the lossless reference
    assert "decoder" in COLUMNS


def test_without_nvimgcodec_or_cuda_the_reason_says_what_to_install() -> None:
    if PROBLEM is None:
        pytest.skip("nvImageCodec and a CUDA device are here: the GPU path is on")
    assert "nvImageCodec" in PROBLEM or "CUDA" in PROBLEM


def test_a_gpu_failure_falls_back_to_the_cpu_for_that_object(monkeypatch) -> None:
    class FailingDecoder:
        def decode(self, frames: list[bytes], params: object) -> list[object]:
            raise RuntimeError("nvJPEG2000: out of device memory")

    data, _ = _j2k(16, seed=1)
    expected = decode_dicom(data).pixels  # whichever decoder: lossless, so the same values
    monkeypatch.setattr(gpu_decode, "gpu_decode_available", lambda: True)
    monkeypatch.setattr(gpu_decode, "_decoder", lambda: (FailingDecoder(), None))
    image = decode_dicom(data)
    assert image.decoder == gpu_decode.CPU
    assert np.array_equal(image.pixels, expected)
    (lost,) = gpu_decode.decode_frames([b"\xff\x4f\xff\x51"])  # the batch failed: CPU decodes
    assert lost is None


@pytest.mark.skipif(PROBLEM is not None, reason=f"GPU decode unavailable: {PROBLEM}")
@pytest.mark.parametrize("bits", [8, 12, 16])
def test_lossless_gpu_decodes_equal_the_cpu(bits: int) -> None:
    data, values = _j2k(bits, seed=bits)
    ds = pydicom.dcmread(io.BytesIO(data))
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    on_gpu = gpu_decode.stored_pixels_on_gpu(
        frame, rows=96, cols=128, bits_allocated=int(ds.BitsAllocated), signed=False
    )
    assert on_gpu is not None
    assert np.array_equal(on_gpu, ds.pixel_array) and np.array_equal(on_gpu, values)
    batch = gpu_decode.decode_frames([frame, frame])
    assert all(b is not None and np.array_equal(b, values) for b in batch)
    assert decode_dicom(data).decoder == gpu_decode.GPU
