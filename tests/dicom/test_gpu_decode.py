"""GPU decoding through nvImageCodec: used when it can be, the CPU otherwise and per object on
any GPU failure; a batch's frames go to the GPU in one call; lossless GPU decodes equal the
CPU's (where a GPU and nvImageCodec are here)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from bad_inputs import mixed_batch
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000Lossless

from harmonize.dicom import gpu_decode
from harmonize.dicom.decode import DecodedImage, decode_dicom, decode_dicom_batch
from harmonize.errors import DicomError
from harmonize.io.manifest import COLUMNS

from dicom_samples import make_image, random_values, same_message

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


def _frame(data: bytes) -> bytes:
    return next(generate_frames(pydicom.dcmread(io.BytesIO(data)).PixelData, number_of_frames=1))


class _Image:
    """Stands in for nvImageCodec's decoded image: ``cpu()`` gives its host copy."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def cpu(self) -> np.ndarray:
        return self.array


class PlannedDecoder:
    """Stands in for nvImageCodec's ``Decoder``: gives for each codestream the image planned for
    it (None: "could not decode"), and records each call's codestreams."""

    def __init__(self, planned: dict[bytes, np.ndarray | None]) -> None:
        self.planned, self.calls = planned, []

    def decode(self, frames: list[bytes], params: object) -> list[_Image | None]:
        self.calls.append(frames)
        return [None if self.planned[f] is None else _Image(self.planned[f]) for f in frames]


def test_a_batch_goes_to_the_gpu_in_one_call_and_what_it_fails_on_to_the_cpu(monkeypatch) -> None:
    reason = "the JPEG sample needs imagecodecs (not on a GPU machine)"
    pytest.importorskip("imagecodecs", reason=reason, exc_type=ImportError)
    batch = mixed_batch()
    stored = {n: pydicom.dcmread(io.BytesIO(batch[n])).pixel_array for n in ("j2k-12", "j2k-16")}
    decoder = PlannedDecoder(
        {
            _frame(batch["j2k-12"]): stored["j2k-12"][:, :, None],  # (rows, cols, 1): taken
            _frame(batch["jpeg-lossless"]): None,  # the GPU failed: the CPU decodes
            _frame(batch["j2k-16"]): stored["j2k-16"].T.copy(),  # not Rows x Columns: the CPU
            _frame(batch["corrupt-j2k"]): None,  # the CPU then gives the error
        }
    )
    calls: list[int] = []
    decode_frames = gpu_decode.decode_frames
    monkeypatch.setattr(gpu_decode, "gpu_decode_available", lambda: True)
    monkeypatch.setattr(gpu_decode, "_decoder", lambda: (decoder, None))
    monkeypatch.setattr(
        gpu_decode,
        "decode_frames",
        lambda frames, **kw: calls.append(len(frames)) or decode_frames(frames, **kw),
    )
    entries = dict(zip(batch, decode_dicom_batch(list(batch.values())), strict=True))
    assert calls == [4] and len(decoder.calls) == 1  # ONE call: every GPU syntax, unsigned
    decoders = {n: e.decoder for n, e in entries.items() if isinstance(e, DecodedImage)}
    assert decoders == {
        "native-16": gpu_decode.CPU,
        "j2k-12": gpu_decode.GPU,
        "jpeg-lossless": gpu_decode.CPU,
        "rle": gpu_decode.CPU,
        "j2k-16": gpu_decode.CPU,
    }
    monkeypatch.setattr(gpu_decode, "gpu_decode_available", lambda: False)
    for name, entry in entries.items():  # the same images and errors as the CPU alone gives
        try:
            alone = decode_dicom(batch[name])
        except DicomError as err:
            assert isinstance(entry, DicomError) and same_message(entry, err), name
            continue
        assert isinstance(entry, DecodedImage), name
        np.testing.assert_array_equal(entry.pixels, alone.pixels)
    assert set(entries) - set(decoders) == {"corrupt-j2k", "truncated", "report"}


@pytest.mark.skipif(PROBLEM is not None, reason=f"GPU decode unavailable: {PROBLEM}")
def test_a_batch_of_jpeg2000_objects_decodes_on_the_gpu_in_one_call_equal_to_the_cpu(
    monkeypatch,
) -> None:
    objects = [_j2k(bits, seed=seed) for seed, bits in enumerate([8, 12, 16, 12, 16])]
    calls: list[int] = []
    decode_frames = gpu_decode.decode_frames
    monkeypatch.setattr(
        gpu_decode,
        "decode_frames",
        lambda frames, **kw: calls.append(len(frames)) or decode_frames(frames, **kw),
    )
    entries = decode_dicom_batch([data for data, _ in objects])
    assert calls == [len(objects)]
    monkeypatch.setattr(gpu_decode, "gpu_decode_available", lambda: False)
    for (data, _), entry in zip(objects, entries, strict=True):
        assert isinstance(entry, DecodedImage) and entry.decoder == gpu_decode.GPU
        on_cpu = decode_dicom(data)
        assert on_cpu.decoder == gpu_decode.CPU
        assert np.array_equal(entry.pixels, on_cpu.pixels)


@pytest.mark.skipif(PROBLEM is not None, reason=f"GPU decode unavailable: {PROBLEM}")
@pytest.mark.parametrize("bits", [8, 12, 16])
def test_lossless_gpu_decodes_equal_the_cpu(bits: int) -> None:
    data, values = _j2k(bits, seed=bits)
    ds = pydicom.dcmread(io.BytesIO(data))
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    (on_gpu,) = gpu_decode.stored_pixels_of([ds])
    assert on_gpu is not None
    assert np.array_equal(on_gpu, ds.pixel_array) and np.array_equal(on_gpu, values)
    batch = gpu_decode.decode_frames([frame, frame])
    assert all(b is not None and np.array_equal(b, values) for b in batch)
    assert decode_dicom(data).decoder == gpu_decode.GPU
