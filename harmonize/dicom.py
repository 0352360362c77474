"""DICOM in and out: stored pixels to display intensities in [0, 1], and back to a derived DICOM.

Decoding follows the DICOM grayscale pipeline (PS3.3 C.11 and PS3.4 N.2): stored values ->
Modality LUT (rescale or Modality LUT Sequence) -> VOI (VOI LUT Sequence, else the first window,
else the image's min..max) -> [0, 1] -> inverted for MONOCHROME1, so 1 is always the brightest
value on screen. Encoding writes harmonized display pixels as a DERIVED image of the same SOP
class, size and bit depth as its source, with a full-range linear window so that decoding the
derived file gives back the harmonized pixels to within one quantisation step.

Example::

    image = decode_dicom(data)
    harmonized = my_method(image.pixels)          # float32, same shape, in [0, 1]
    out = encode_derived(image.header, harmonized, method="histogram", description="site A->B")
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import io
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi, get_decoder, get_encoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from harmonize.errors import DicomError

_PIXEL_DATA_TAG = 0x7FE00010

VoiKind = Literal["lut", "window", "minmax"]

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")

# Transfer syntaxes a derived image may be written in: all lossless. The compressed ones are used
# only when pydicom has an encoder plugin installed for them (see `writable_transfer_syntaxes`).
UNCOMPRESSED_OUTPUT = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
COMPRESSED_OUTPUT = (RLELossless, JPEG2000Lossless, JPEGLSLossless)

_LOSSLESS_COMPRESSED = frozenset(
    str(ts)
    for ts in (
        RLELossless,
        JPEG2000Lossless,
        JPEGLSLossless,
        JPEGLossless,
        JPEGLosslessSV1,
        HTJ2KLossless,
        HTJ2KLosslessRPCL,
    )
)

# Encoder plugin preferred per transfer syntax: pylibjpeg-rle is ~100x faster than pydicom's
# pure-Python RLE encoder.
_PREFERRED_ENCODER_PLUGIN = {RLELossless: "pylibjpeg"}

# pylibjpeg-openjpeg always uses 6 DWT resolution levels, which need 2^5 pixels per side.
_J2K_MIN_SIZE = 32

# What to install when pydicom cannot decode a compressed transfer syntax.
_DECODER_HINT = {
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg (GPL-3.0) or python-gdcm",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg (GPL-3.0) or python-gdcm",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg, pillow or python-gdcm",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg, pillow or python-gdcm",  # JPEG extended
    "1.2.840.10008.1.2.4.80": "pyjpegls, pylibjpeg-libjpeg or python-gdcm",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls, pylibjpeg-libjpeg or python-gdcm",  # JPEG-LS near-l.
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE lossless
}

# Attributes whose values are in the source's stored or modality units, or that describe the
# source's pixels; none is true of the harmonized pixels, so a derived image drops them.
_SOURCE_PIXEL_ATTRIBUTES = (
    "ModalityLUTSequence",
    "VOILUTSequence",
    "VOILUTFunction",
    "WindowCenterWidthExplanation",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "RealWorldValueMappingSequence",
    "IconImageSequence",
    "DerivationCodeSequence",
)

# Basic patient-identifying attributes blanked (Type 2) or removed (Type 3) by `deidentify=True`.
# This is NOT a PS3.15 confidentiality profile: UIDs, dates and private tags are handled only as
# listed here, and burned-in text is untouched.
_PHI_BLANK = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber")
_PHI_BLANK_IF_PRESENT = ("ReferringPhysicianName", "StudyID")
_PHI_REMOVE = (
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientAge",
    "PatientWeight",
    "PatientSize",
    "MedicalRecordLocator",
    "EthnicGroup",
    "PatientComments",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "PerformingPhysicianName",
    "OperatorsName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "StationName",
    "DeviceSerialNumber",
)


@dataclass(frozen=True)
class ImageMeta:
    """What harmonize needs to know about a decoded image, as plain values (one table row).

    Missing text attributes are ``""``. ``window_center``/``window_width`` are the window that was
    applied, in modality units (after rescale): the first Window Center/Width for ``voi_kind ==
    "window"``, the image's ``(min + max) / 2`` and ``max - min`` for ``"minmax"``, NaN for
    ``"lut"``.
    """

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    modality: str
    rows: int
    cols: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    transfer_syntax_uid: str
    voi_kind: VoiKind
    window_center: float
    window_width: float
    manufacturer: str
    body_part: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict, e.g. to build a manifest row."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded single-frame grayscale image.

    ``pixels`` is float32 (rows, cols) in [0, 1], 1 = brightest on screen (MONOCHROME2 sense);
    ``header`` is the source dataset without Pixel Data, used by `encode_derived`; it crosses
    process boundaries as `header_to_bytes`.
    """

    pixels: np.ndarray
    meta: ImageMeta
    header: Dataset


# --------------------------------------------------------------------------------------------
# Decoding


def decode_dicom(data: bytes) -> DecodedImage:
    """Decode a single-frame MONOCHROME1/2 DICOM image to display intensities in [0, 1].

    Args:
        data: the bytes of a DICOM Part-10 file (a bare dataset without preamble is accepted too).

    Returns:
        The display pixels, the image's metadata and the header (dataset without Pixel Data).

    Raises:
        DicomError: ``data`` is not DICOM or is truncated, holds no pixel data, is multi-frame or
            colour, or its transfer syntax cannot be decoded with the installed plugins.
    """
    ds = _read_dataset(data)
    _check_decodable(ds)
    stored = _decode_stored_pixels(ds)
    values = _apply_modality(stored, ds)
    display, voi_kind, center, width = _apply_voi(values, ds)
    photometric = str(ds.PhotometricInterpretation)
    if photometric == "MONOCHROME1":
        display = 1.0 - display
    display = np.ascontiguousarray(display, dtype=np.float32)

    del ds.PixelData  # also releases pydicom's cached array
    meta = ImageMeta(
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        modality=str(ds.get("Modality", "")),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        bits_allocated=int(ds.BitsAllocated),
        bits_stored=int(ds.BitsStored),
        pixel_representation=int(ds.PixelRepresentation),
        photometric=photometric,
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        voi_kind=voi_kind,
        window_center=center,
        window_width=width,
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""),
    )
    return DecodedImage(pixels=display, meta=meta, header=ds)


def _read_dataset(data: bytes) -> Dataset:
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


def _check_decodable(ds: Dataset) -> None:
    """Raise DicomError unless ``ds`` is a single-frame grayscale image we can decode."""
    sop_class = ds.get("SOPClassUID", "")
    sop_name = getattr(UID(str(sop_class)), "name", str(sop_class)) if sop_class else "unknown"
    if "PixelData" not in ds:
        kind = (
            "float pixel data, which is not supported"
            if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
            else "no Pixel Data (7FE0,0010)"
        )
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

    tsyntax = ds.file_meta.TransferSyntaxUID
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


def _decode_stored_pixels(ds: Dataset) -> np.ndarray:
    """The stored values as an integer (rows, cols) array, via pydicom's pixel handlers."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = ds.pixel_array
    except Exception as err:  # decoders raise ValueError, RuntimeError, EOFError, ...
        raise DicomError(
            f"could not decode the pixel data ({tsyntax.name}): {type(err).__name__}: {err}; "
            "the file is probably truncated or corrupt: re-fetch it from the archive"
        ) from err
    if arr.shape != (int(ds.Rows), int(ds.Columns)):
        raise DicomError(
            f"decoded pixel data has shape {arr.shape}, but Rows x Columns is "
            f"{ds.Rows}x{ds.Columns}; the file is inconsistent: fix or exclude it"
        )
    return arr


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


# --------------------------------------------------------------------------------------------
# Stored <-> display values of a derived image


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


# --------------------------------------------------------------------------------------------
# Headers across processes


def header_to_bytes(ds: Dataset) -> bytes:
    """Serialise a header (a dataset without Pixel Data) compactly, file meta included.

    Example: ``header_from_bytes(header_to_bytes(image.header))`` equals ``image.header``.
    """
    ds = _without_pixel_data(ds)
    buffer = io.BytesIO()
    try:
        if getattr(ds, "file_meta", None) and "TransferSyntaxUID" in ds.file_meta:
            pydicom.dcmwrite(buffer, ds)
        else:
            pydicom.dcmwrite(buffer, ds, implicit_vr=False, little_endian=True)
    except Exception as err:
        raise DicomError(
            f"could not serialise the DICOM header ({type(err).__name__}: {err}); an attribute "
            "has a value its VR cannot encode: fix it before writing"
        ) from err
    return buffer.getvalue()


def _without_pixel_data(ds: Dataset) -> Dataset:
    """A shallow copy of ``ds`` (file meta included) without Pixel Data; ``ds`` is untouched."""
    stripped = Dataset({tag: elem for tag, elem in ds.items() if tag != _PIXEL_DATA_TAG})
    if getattr(ds, "file_meta", None) is not None:
        stripped.file_meta = ds.file_meta
    return stripped


def header_from_bytes(data: bytes) -> Dataset:
    """The dataset `header_to_bytes` wrote."""
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as err:
        raise DicomError(
            f"could not read a serialised DICOM header ({type(err).__name__}: {err}); pass bytes "
            "made by header_to_bytes"
        ) from err


# --------------------------------------------------------------------------------------------
# Encoding a derived image


def writable_transfer_syntaxes() -> list[str]:
    """The lossless transfer syntaxes `encode_derived` can write with the installed plugins."""
    compressed = [str(ts) for ts in COMPRESSED_OUTPUT if get_encoder(ts).is_available]
    return [str(ts) for ts in UNCOMPRESSED_OUTPUT] + compressed


def encode_derived(
    header: Dataset,
    pixels: np.ndarray,
    *,
    method: str,
    description: str,
    uid_entropy: list[str] | None = None,
    transfer_syntax_uid: str | None = None,
    deidentify: bool = False,
) -> bytes:
    """Write harmonized display pixels as a DERIVED DICOM of the same kind as the source.

    The result has the source's SOP class, photometric interpretation, size and bit depth
    (unsigned), no rescale (or slope 1 / intercept 0 where the source had one), a linear window
    over the full stored range, new SOP Instance and Series UIDs, ImageType DERIVED\\SECONDARY, a
    Source Image Sequence pointing at the source and a Contributing Equipment item naming
    harmonize. Every other attribute (patient, study, equipment) is kept unless ``deidentify``.

    Args:
        header: the source dataset (``DecodedImage.header``), not modified.
        pixels: float (rows, cols) display intensities in [0, 1] (clipped), 1 = brightest.
        method: the harmonization method, e.g. ``"cyclegan"``; recorded in descriptions.
        description: free text recorded in Derivation Description (e.g. model and sites).
        uid_entropy: run-level values (e.g. ``[method, model_hash]``) that make the new UIDs
            deterministic; the source SOP Instance UID (for the instance) and Series Instance UID
            (for the series) are always mixed in, so one source series maps to one derived series.
            None gives random UIDs.
        transfer_syntax_uid: output transfer syntax; default: the source's if it is one of
            `writable_transfer_syntaxes` other than implicit VR, else Explicit VR Little Endian.
        deidentify: blank or remove basic patient-identifying attributes and private tags (not a
            full PS3.15 profile).

    Returns:
        A complete DICOM Part-10 file.

    Example::

        out = encode_derived(image.header, harmonized, method="histogram", description="A->B")
        assert np.allclose(decode_dicom(out).pixels, harmonized, atol=1 / 4095)  # 12-bit source
    """
    _check_source_header(header)
    rows, cols = int(header.Rows), int(header.Columns)
    pixels = np.asarray(pixels)
    if pixels.shape != (rows, cols):
        raise DicomError(
            f"pixels have shape {pixels.shape} but the source image is {rows}x{cols}; "
            "harmonized pixels must keep the source's size (undo any resizing first)"
        )
    if pixels.dtype.kind not in "fiu" or not np.isfinite(pixels).all():
        raise DicomError(
            "pixels must be finite real numbers in [0, 1]; the harmonizer produced NaN/inf or a "
            f"non-numeric dtype ({pixels.dtype})"
        )
    source_ts = UID(str(header.file_meta.TransferSyntaxUID)) if _has_ts(header) else None
    out_ts = _choose_transfer_syntax(source_ts, transfer_syntax_uid)
    if out_ts == JPEG2000Lossless and min(rows, cols) < _J2K_MIN_SIZE:
        if transfer_syntax_uid is not None:
            raise DicomError(
                f"cannot write a {rows}x{cols} image as JPEG 2000: openjpeg's 6 resolution "
                f"levels need at least {_J2K_MIN_SIZE} pixels per side; use "
                f"{ExplicitVRLittleEndian} or {RLELossless}"
            )
        out_ts = ExplicitVRLittleEndian

    bits_stored, bits_allocated = int(header.BitsStored), int(header.BitsAllocated)
    photometric = str(header.PhotometricInterpretation)
    stored = display_to_stored(pixels, bits_stored, photometric, bits_allocated=bits_allocated)

    ds = copy.deepcopy(_without_pixel_data(header))
    _make_derived_attributes(ds, source_ts, method, description, uid_entropy)
    if deidentify:
        _deidentify(ds)

    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(stored, photometric, bits_stored, generate_instance_uid=False)
    if out_ts.is_compressed:
        try:
            ds.compress(
                out_ts,
                encoding_plugin=_PREFERRED_ENCODER_PLUGIN.get(out_ts, ""),
                generate_instance_uid=False,
            )
        except Exception as err:
            raise DicomError(
                f"could not encode the derived image as {out_ts.name} ({type(err).__name__}: "
                f"{err}); choose another transfer_syntax_uid, e.g. {ExplicitVRLittleEndian}"
            ) from err
    ds.file_meta.TransferSyntaxUID = out_ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.preamble = None  # the source's preamble may carry other content (e.g. a TIFF header)

    buffer = io.BytesIO()
    try:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    except Exception as err:
        raise DicomError(
            f"could not write the derived DICOM ({type(err).__name__}: {err}); a source "
            "attribute has a value its VR cannot encode: fix the source header"
        ) from err
    return buffer.getvalue()


def _has_ts(ds: Dataset) -> bool:
    return bool(getattr(ds, "file_meta", None)) and "TransferSyntaxUID" in ds.file_meta


def _check_source_header(header: Dataset) -> None:
    if not isinstance(header, Dataset):
        raise DicomError(
            f"header must be a pydicom Dataset (DecodedImage.header), got {type(header).__name__}"
        )
    missing = [
        keyword
        for keyword in (
            "SOPClassUID",
            "SOPInstanceUID",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "Rows",
            "Columns",
            "BitsAllocated",
            "BitsStored",
            "PhotometricInterpretation",
        )
        if keyword not in header
    ]
    if missing:
        raise DicomError(
            f"the source header lacks {', '.join(missing)}; pass the header of a decoded image "
            "(DecodedImage.header or header_from_bytes of it)"
        )
    photometric = str(header.PhotometricInterpretation)
    if photometric not in MONOCHROME:
        raise DicomError(f"source photometric {photometric!r} is not MONOCHROME1 or MONOCHROME2")


def _choose_transfer_syntax(source: UID | None, requested: str | None) -> UID:
    """The requested syntax if writable; else the source's if lossless and writable; else EVRLE."""
    writable = writable_transfer_syntaxes()
    if requested is not None:
        if str(requested) not in writable:
            name = getattr(UID(str(requested)), "name", str(requested))
            raise DicomError(
                f"cannot write transfer syntax {name} ({requested}); derived images are written "
                f"losslessly in one of {writable} (JPEG-LS needs the pyjpegls plugin)"
            )
        return UID(str(requested))
    if source is not None and str(source) in writable and source != ImplicitVRLittleEndian:
        return source
    return ExplicitVRLittleEndian


def _make_derived_attributes(
    ds: Dataset,
    source_ts: UID | None,
    method: str,
    description: str,
    uid_entropy: list[str] | None,
) -> None:
    """Turn a copy of the source header into the header of the derived image, in place."""
    source_sop_class = str(ds.SOPClassUID)
    source_sop_instance = str(ds.SOPInstanceUID)
    source_series = str(ds.SeriesInstanceUID)
    had_rescale = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    now = datetime.datetime.now(datetime.UTC)

    if uid_entropy is None:
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
    else:
        entropy = [str(value) for value in uid_entropy]
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["sop", source_sop_instance, *entropy])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", source_series, *entropy])

    image_type = list(ds.get("ImageType", []) or [])
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    _set_text(ds, "SeriesDescription", f"Harmonized ({method})", max_chars=64)
    _set_text(
        ds,
        "DerivationDescription",
        f"Intensity harmonization by {method}: {description}",
        max_chars=1024,
    )

    purpose = Dataset()
    purpose.CodeValue = "121322"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    source_ref = Dataset()
    source_ref.ReferencedSOPClassUID = source_sop_class
    source_ref.ReferencedSOPInstanceUID = source_sop_instance
    source_ref.PurposeOfReferenceCodeSequence = [purpose]
    ds.SourceImageSequence = [source_ref]

    equipment_purpose = Dataset()
    equipment_purpose.CodeValue = "109102"
    equipment_purpose.CodingSchemeDesignator = "DCM"
    equipment_purpose.CodeMeaning = "Processing Equipment"
    equipment = Dataset()
    equipment.PurposeOfReferenceCodeSequence = [equipment_purpose]
    equipment.Manufacturer = "harmonize"
    equipment.SoftwareVersions = _package_version()
    equipment.ContributionDateTime = now.strftime("%Y%m%d%H%M%S+0000")
    _set_text(equipment, "ContributionDescription", f"Intensity harmonization ({method})", 1024)
    ds.ContributingEquipmentSequence = [*ds.get("ContributingEquipmentSequence", []), equipment]

    # Dates and times without an offset are in the dataset's Timezone Offset From UTC, if any.
    local_now = now.astimezone(_dataset_timezone(ds))
    ds.InstanceCreationDate = local_now.strftime("%Y%m%d")
    ds.InstanceCreationTime = local_now.strftime("%H%M%S")
    if "InstanceCreatorUID" in ds:  # names the creator of the source instance, not of this one
        del ds.InstanceCreatorUID

    for keyword in _SOURCE_PIXEL_ATTRIBUTES:
        if keyword in ds:
            delattr(ds, keyword)
    if had_rescale:  # some IODs (CT, DX) require the Modality LUT module: an identity rescale
        ds.RescaleSlope = "1"
        ds.RescaleIntercept = "0"
        ds.RescaleType = "US"
    # The linear window that maps stored 0 -> 0 and 2^bits - 1 -> 1 exactly (PS3.3 C.11.2.1.2.1):
    # width 2^bits, center 2^(bits-1).
    bits = int(ds.BitsStored)
    ds.WindowCenter = str(2 ** (bits - 1))
    ds.WindowWidth = str(2**bits)
    ds.WindowCenterWidthExplanation = "FULL RANGE"
    lossy_source = source_ts is not None and source_ts.is_compressed
    lossy_source = lossy_source and str(source_ts) not in _LOSSLESS_COMPRESSED
    if lossy_source and "LossyImageCompression" not in ds:
        ds.LossyImageCompression = "01"  # once lossy, always flagged as lossy


def _dataset_timezone(ds: Dataset) -> datetime.tzinfo | None:
    """The dataset's Timezone Offset From UTC (e.g. "-0400"), else None (the local timezone)."""
    offset = str(ds.get("TimezoneOffsetFromUTC", "") or "").strip()
    if len(offset) != 5 or offset[0] not in "+-" or not offset[1:].isdigit():
        return None
    minutes = int(offset[1:3]) * 60 + int(offset[3:5])
    sign = -1 if offset[0] == "-" else 1
    return datetime.timezone(datetime.timedelta(minutes=sign * minutes))


def _set_text(ds: Dataset, keyword: str, text: str, max_chars: int) -> None:
    """Set a text attribute, truncated to its VR length, kept encodable in the dataset's charset."""
    text = text[:max_chars]
    if not text.isascii():
        charset = ds.get("SpecificCharacterSet")
        if charset in (None, "", "ISO_IR 6"):
            ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8; ASCII values stay valid
        elif charset != "ISO_IR 192":
            text = text.encode("ascii", "replace").decode("ascii")
    setattr(ds, keyword, text)


def _deidentify(ds: Dataset) -> None:
    for keyword in _PHI_BLANK:
        setattr(ds, keyword, "")
    for keyword in _PHI_BLANK_IF_PRESENT:
        if keyword in ds:
            setattr(ds, keyword, "")
    for keyword in _PHI_REMOVE:
        if keyword in ds:
            delattr(ds, keyword)
    ds.remove_private_tags()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "harmonize basic: patient names, IDs, dates of birth blanked"


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("harmonize")
    except Exception:
        return "unknown"
