"""Awkward objects a real archive holds, built from pydicom, pydicom-data and the session's
synthetic images: the byte builders the decoder tests use, and ``corpus``, the 28 kinds the run
tests send through both executors, each with the status and reason it must end with."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from dicom_samples import data_path, make_image, random_values


def build_dataset(**attributes) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def rgb_image() -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    ds.SOPInstanceUID = generate_uid()
    ds.set_pixel_data(np.zeros((8, 8, 3), np.uint8), "RGB", 8)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def altered(**attributes: object) -> bytes:
    """A valid image whose header is then changed (``TransferSyntaxUID`` in the file meta)."""
    ds = pydicom.dcmread(io.BytesIO(make_image(random_values(12, False), 12)))  # 36 x 44
    for keyword, value in attributes.items():
        setattr(ds.file_meta if keyword == "TransferSyntaxUID" else ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def corrupt_length() -> bytes:
    """An image whose Patient Name element claims 200 bytes: parsing loses its way."""
    data = bytearray(make_image(random_values(12, False), 12))
    at = data.find(b"\x10\x00\x10\x00PN")
    data[at + 6 : at + 8] = (200).to_bytes(2, "little")
    return bytes(data)


def multiframe_image() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(make_image(random_values(12, False), 12)))
    ds.set_pixel_data(np.zeros((2, 8, 8), np.uint16), "MONOCHROME2", 12)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _saved(ds: Dataset, enforce: bool = True) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=enforce)
    return buffer.getvalue()


def jpeg_image(source: bytes, syntax: str) -> bytes:
    """``source`` (an uncompressed image) with its pixels in ``syntax``: JPEG lossless SV1 or
    12-bit extended (imagecodecs), or JPEG-LS lossless (pyjpegls)."""
    ds = pydicom.dcmread(io.BytesIO(source))
    if syntax == JPEGLSLossless:
        ds.compress(syntax, encoding_plugin="pyjpegls")
        return _saved(ds)
    import imagecodecs  # here: the GPU machine's checks import this module without it

    bits = int(ds.BitsStored)
    options = {"lossless": True, "predictor": 1} if syntax == JPEGLosslessSV1 else {"level": 90}
    frame = imagecodecs.jpeg8_encode(ds.pixel_array, bitspersample=bits, **options)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _saved(ds)


def compressed(source: bytes, syntax: str) -> bytes:
    """``source`` (an uncompressed image) with its pixels in JPEG 2000 lossless (OpenJPEG) or
    RLE lossless (pydicom's own encoder)."""
    ds = pydicom.dcmread(io.BytesIO(source))
    ds.compress(syntax, encoding_plugin="pylibjpeg" if syntax == JPEG2000Lossless else "pydicom")
    return _saved(ds)


def mixed_batch() -> dict[str, bytes]:
    """Objects a batch decode must keep apart, by name: native 16-bit, JPEG 2000 lossless (12
    and 16 bits), JPEG lossless, RLE, a JPEG 2000 whose codestream is corrupt (it parses, its
    pixels do not decode), a truncated file and a report (no pixel data)."""
    j2k = compressed(make_image(random_values(12, False, (48, 40), seed=5), 12), JPEG2000Lossless)
    jpeg_source = make_image(random_values(12, False, shape=(64, 64), seed=2), 12)
    return {
        "native-16": make_image(random_values(16, False, seed=1), 16),
        "j2k-12": j2k,
        "jpeg-lossless": jpeg_image(jpeg_source, JPEGLosslessSV1),
        "rle": compressed(make_image(random_values(8, False, seed=3), 8), RLELossless),
        "j2k-16": compressed(
            make_image(random_values(16, False, (40, 48), seed=4), 16), JPEG2000Lossless
        ),
        "corrupt-j2k": j2k.replace(b"\xff\x4f\xff\x51", bytes(4)),  # no SOC + SIZ markers
        "truncated": j2k[:-100],
        "report": build_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11"),
    }


def float_image() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(make_image(random_values(12, False), 12)))
    del ds.PixelData
    ds.FloatPixelData = np.zeros(36 * 44, np.float32).tobytes()
    return _saved(ds, enforce=False)


def bare_dataset(source: bytes) -> bytes:
    """``source`` as a bare implicit-VR dataset: no preamble, 'DICM' or file meta (old
    archives)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(io.BytesIO(source))
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    return fp.getvalue()


def part2_image() -> bytes:
    """A JPEG 2000 file relabelled JPEG 2000 Part 2 multi-component: no decoder handles it."""
    ds = pydicom.dcmread(data_path("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"
    return _saved(ds, enforce=False)


APPLEDOUBLE = b"\x00\x05\x16\x07"  # the magic of macOS's "._name" resource-fork files


class Kind(NamedTuple):
    """One awkward object: its file name, its bytes, and the status and reason it must get."""

    name: str
    make: Callable[[], bytes]
    status: str  # "ok" or "error"
    reason: str = ""  # a fragment of the error (or, for ok rows, of the notes)


def corpus(image: bytes, monochrome1: bytes) -> list[Kind]:
    """The kinds, built around ``image`` (a valid synthetic CR of the session archive) and
    ``monochrome1`` (another, stored as MONOCHROME1)."""
    jpeg_source = make_image(random_values(12, False, shape=(64, 64), seed=5), 12)
    return [
        Kind("plain.dcm", lambda: image, "ok"),
        Kind("monochrome1.dcm", lambda: monochrome1, "ok"),
        Kind("bare-dataset.dcm", lambda: bare_dataset(jpeg_source), "ok"),
        Kind(".hidden.dcm", lambda: image, "ok"),
        Kind("name with \\ and \x01 control.dcm", lambda: image, "ok"),
        Kind("jpeg-lossless-sv1.dcm", lambda: jpeg_image(jpeg_source, JPEGLosslessSV1), "ok"),
        Kind("jpeg-extended-12bit.dcm", lambda: jpeg_image(jpeg_source, JPEGExtended12Bit), "ok"),
        Kind("jpeg-ls-lossless.dcm", lambda: jpeg_image(jpeg_source, JPEGLSLossless), "ok"),
        Kind("real-jpeg-ll.dcm", lambda: data_path("JPEG-LL.dcm").read_bytes(), "ok"),
        Kind(
            "tiny-8x8.dcm",
            lambda: make_image(random_values(12, False, shape=(8, 8)), 12),
            "ok",
            "smaller than SSIM's 11-pixel window",
        ),
        Kind("random.dcm", lambda: os.urandom(4096), "error", "not a DICOM file"),
        Kind("empty.dcm", lambda: b"", "error", "not a DICOM file"),
        Kind(
            "._appledouble.dcm",
            lambda: b"\x00\x05\x16\x07" + os.urandom(200),
            "error",
            "not a DICOM file",
        ),
        Kind("truncated-header.dcm", lambda: image[:400], "error", "truncated"),
        Kind("truncated-pixels.dcm", lambda: image[: len(image) // 2], "error", "truncated"),
        Kind(
            "report.dcm",
            lambda: build_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11"),
            "error",
            "Basic Text SR Storage object, not an image",
        ),
        Kind(
            "presentation-state.dcm",
            lambda: build_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.11.1"),
            "error",
            "presentation state",
        ),
        Kind(
            "key-object.dcm",
            lambda: build_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.59"),
            "error",
            "key object selection",
        ),
        Kind("DICOMDIR.dcm", lambda: data_path("DICOMDIR").read_bytes(), "error", "DICOMDIR"),
        Kind("rgb.dcm", rgb_image, "error", "colour image"),
        Kind("multiframe.dcm", multiframe_image, "error", "2 frames"),
        Kind("float.dcm", float_image, "error", "float pixel data"),
        Kind(
            "16000-squared.dcm", lambda: altered(Rows=16000, Columns=16000), "error", "megapixels"
        ),
        Kind("pixels-too-long.dcm", lambda: altered(Rows=30), "error", "more than the 2640"),
        Kind("pixels-too-short.dcm", lambda: altered(Rows=40), "error", "need 3520"),
        Kind(
            "bits-allocated-32.dcm", lambda: altered(BitsAllocated=32), "error", "Bits Allocated 32"
        ),
        Kind("zero-rows.dcm", lambda: altered(Rows=0), "error", "both sizes > 0"),
        Kind(
            "unknown-syntax.dcm",
            lambda: altered(TransferSyntaxUID="1.2.3.4.5"),
            "error",
            "is not one that DICOM defines",
        ),
        Kind(
            "jpeg2000-part2.dcm",
            part2_image,
            "error",
            "pydicom has no decoder",
        ),
        Kind("corrupt-length.dcm", corrupt_length, "error", "the header is corrupt"),
    ]


def write_corpus(root: Path, kinds: list[Kind]) -> dict[str, Kind]:
    """Each kind as a file under ``root/site/``; returns them by file path."""
    folder = root / "site"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind in kinds:
        path = folder / kind.name
        path.write_bytes(kind.make())
        out[str(path)] = kind
    return out
