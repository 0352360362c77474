"""Parsing a DICOM object's bytes and checking, before any pixel is decoded, that harmonize can
decode it: a single-frame grayscale image of a known transfer syntax, with a decoder installed,
pixel data of the size its header says, and at most the run's pixel limit.

`read_dataset` parses (a bare dataset without preamble too); `check_decodable` raises a
`DicomError` that says what is wrong and what to do. `harmonize.dicom.decode` runs both on every
object before decoding it.
"""

from __future__ import annotations

import io
import warnings

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from harmonize.dicom import codecs
from harmonize.dicom.values import MONOCHROME
from harmonize.errors import DicomError
from harmonize.io.archive import MAX_PIXELS

#: SOP classes that hold no image, named in their refusal.
_NON_IMAGE_KINDS = {
    "1.2.840.10008.1.3.10": "a DICOMDIR (a media directory listing the files beside it)",
    "1.2.840.10008.5.1.4.1.1.11.1": "a presentation state (display settings, no pixels)",
    "1.2.840.10008.5.1.4.1.1.88.59": "a key object selection (a list of other images)",
    "1.2.840.10008.5.1.4.1.1.104.1": "an encapsulated PDF",
}

codecs.register()  # JPEG baseline / extended / lossless through imagecodecs (BSD)

# What to install when pydicom cannot decode a compressed transfer syntax.
_DECODER_HINT = {
    "1.2.840.10008.1.2.4.57": "imagecodecs",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "imagecodecs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.50": "imagecodecs or pillow",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "imagecodecs",  # JPEG extended
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE lossless
}


def read_dataset(data: bytes) -> Dataset:
    """Parse ``data``, accepting a bare dataset without preamble."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DicomError(f"expected the bytes of a DICOM file, got {type(data).__name__}")
    truncated = (
        f"the DICOM file ({len(data)} bytes) is truncated or corrupt: its dataset ends before "
        "the image attributes and pixel data; re-fetch it from the archive"
    )
    ds: Dataset
    try:
        # pydicom reports an early end of file as a warning (and may then drop the whole
        # dataset): record warnings to turn that into a clear error.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        ds = _read_bare_dataset(data)
        caught = []
    except Exception as err:  # pydicom raises many types on a damaged header
        raise DicomError(f"{truncated} ({type(err).__name__}: {err})") from err
    if any("end of file" in str(w.message).lower() for w in caught):
        raise DicomError(truncated)
    media_class = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
    if media_class in _NON_IMAGE_KINDS and "PixelData" not in ds:
        raise DicomError(_not_an_image(media_class))
    if "SOPClassUID" not in ds and "PixelData" not in ds:
        raise DicomError(truncated)
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax is None:
        # A bare dataset: name the encoding pydicom detected so the pixel decoders can work.
        ds.file_meta = ds.file_meta if hasattr(ds, "file_meta") else FileMetaDataset()
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little
            else ExplicitVRBigEndian
        )
    return ds


def _read_bare_dataset(data: bytes) -> Dataset:
    """Read a dataset without the Part-10 preamble; reject anything that is not an image."""
    not_dicom = (
        f"not a DICOM file: no 'DICM' marker at byte 128 and no image dataset at the start "
        f"({len(data)} bytes, first bytes {bytes(data[:8])!r}); pass the bytes of a DICOM "
        "Part-10 (.dcm) file"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            # Random bytes often "parse" as garbage elements; a real image has these.
            ok = "PixelData" in ds and "Rows" in ds and "SOPClassUID" in ds
    except Exception as err:
        raise DicomError(not_dicom) from err
    if not ok:
        raise DicomError(not_dicom)
    return ds


def _not_an_image(sop_class: str) -> str:
    kind = _NON_IMAGE_KINDS.get(sop_class) or f"a {UID(sop_class).name} object"
    return (
        f"the object is {kind}, not an image; only single-frame grayscale images (e.g. CR, DX) "
        "can be harmonized: filter non-image objects out of the input"
    )


def check_decodable(ds: Dataset, max_pixels: int = MAX_PIXELS, data: bytes = b"") -> None:
    """Raise DicomError unless ``ds`` is a single-frame grayscale image we can decode, of at
    most ``max_pixels`` pixels (``data``: the file's bytes, to tell a corrupt header)."""
    sop_class = str(ds.get("SOPClassUID", "") or "")
    sop_name = getattr(UID(sop_class), "name", sop_class) if sop_class else "unknown"
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            kind = "float pixel data, which is not supported"
        elif _pixel_data_follows(data):
            raise DicomError(
                "the header is corrupt: the file holds Pixel Data (7FE0,0010), but reading "
                "stopped before it (an element's length is wrong); fix or exclude the file"
            )
        elif sop_class and UID(sop_class).name == sop_class:  # not a SOP class DICOM knows
            raise DicomError(
                f"the DICOM file ({len(data)} bytes) is truncated or corrupt: no Pixel Data, and "
                f"its SOP Class UID {sop_class!r} is not one DICOM defines; re-fetch it from the "
                "archive"
            )
        elif sop_class and not UID(sop_class).name.endswith("Image Storage"):
            raise DicomError(_not_an_image(sop_class))
        else:
            kind = "no Pixel Data (7FE0,0010)"
        raise DicomError(
            f"the object (SOP class {sop_name}) has {kind}; only single-frame grayscale images "
            "(e.g. CR, DX) can be harmonized: filter non-image objects out of the input"
        )
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1))
        photometric = str(ds.PhotometricInterpretation)
        rows, cols = int(ds.Rows), int(ds.Columns)
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        int(ds.PixelRepresentation)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise DicomError(
            f"the Image Pixel module is incomplete or invalid ({err}); the file is not a "
            "conformant image: fix or exclude it"
        ) from err
    if frames != 1:
        raise DicomError(
            f"the image has {frames} frames; only single-frame images are supported: split the "
            "multi-frame object or exclude it"
        )
    if samples != 1 or photometric not in MONOCHROME:
        raise DicomError(
            f"photometric interpretation {photometric!r} with {samples} sample(s) per pixel is a "
            "colour image; only grayscale MONOCHROME1/MONOCHROME2 images are supported"
        )
    if allocated not in (8, 16) or not 1 <= stored <= allocated:
        raise DicomError(
            f"Bits Allocated {allocated} / Bits Stored {stored} is not supported; only integer "
            "pixels with 8 or 16 bits allocated and at most 16 bits stored are"
        )
    if rows < 1 or cols < 1:
        raise DicomError(f"the image is {rows}x{cols} pixels; a real image has both sizes > 0")
    if rows * cols * frames > max_pixels:
        raise DicomError(
            f"the header claims {rows}x{cols} pixels ({rows * cols / 1e6:.0f} megapixels), more "
            f"than the limit of {max_pixels / 1e6:.0f} megapixels: the header is probably "
            "corrupt (if the image is real, raise the limit: harmonize run --max-pixels)"
        )

    tsyntax = ds.file_meta.TransferSyntaxUID
    if not tsyntax.is_transfer_syntax:
        raise DicomError(
            f"the transfer syntax UID {str(tsyntax)!r} is not one that DICOM defines (a private "
            "or misspelt UID); the pixel data cannot be decoded: convert the file to a standard "
            "transfer syntax"
        )
    if not tsyntax.is_encapsulated:
        _check_native_length(ds, rows * cols * frames * samples * allocated // 8)
    if tsyntax.is_compressed:
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError as err:
            raise DicomError(
                f"pixel data in transfer syntax {tsyntax.name} ({tsyntax}) cannot be decoded: "
                "pydicom has no decoder for it; convert the file to a supported syntax first"
            ) from err
        if not decoder.is_available:
            hint = _DECODER_HINT.get(str(tsyntax), "a pydicom pixel data plugin")
            raise DicomError(
                f"pixel data in transfer syntax {tsyntax.name} ({tsyntax}) cannot be decoded: "
                f"no decoder plugin is installed; install {hint} "
                f"(pydicom: {'; '.join(decoder.missing_dependencies)})"
            )


def _pixel_data_follows(data: bytes) -> bool:
    """Whether the file's bytes hold a Pixel Data tag (little or big endian) that parsing
    never reached."""
    raw = bytes(data)
    return b"\xe0\x7f\x10\x00" in raw or b"\x7f\xe0\x00\x10" in raw


def _check_native_length(ds: Dataset, expected: int) -> None:
    """Native (uncompressed) Pixel Data must hold what Rows x Columns x Bits Allocated say
    (plus one pad byte to an even length)."""
    found = len(ds.PixelData)
    if found < expected:
        raise DicomError(
            f"Pixel Data holds {found} bytes, but Rows x Columns x Bits Allocated need "
            f"{expected}: the file is truncated or its header is wrong; re-fetch it from the "
            "archive"
        )
    if found > expected + (expected % 2):
        raise DicomError(
            f"Pixel Data holds {found} bytes, more than the {expected} that Rows x Columns x "
            "Bits Allocated give: the header does not describe the pixels (wrong Rows, Columns "
            "or Bits Allocated); fix or exclude the file"
        )
