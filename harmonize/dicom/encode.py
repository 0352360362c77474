"""Encoding harmonized pixels as a derived DICOM image, with its provenance.

`encode_derived` writes harmonized display pixels as a DERIVED image of the same SOP class, size
and bit depth as its source, with a full-range linear window so that decoding the derived file
gives back the harmonized pixels to within one quantisation step. It is written losslessly, in the
source's transfer syntax where an encoder for it is installed, and names its source (Source Image
Sequence) and harmonize (Contributing Equipment: the method as model name, harmonize's version, a
Device UID that changes with every model), and is de-identified by the PS3.15 Basic Profile when
asked (`harmonize.dicom.deidentify`).

Example::

    out = encode_derived(image.header, harmonized, method="histogram", description="site A->B")
"""

from __future__ import annotations

import copy
import datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
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

from harmonize.dicom.deidentify import DeidentifyOptions
from harmonize.dicom.deidentify import deidentify as deidentify_dataset
from harmonize.dicom.header import (
    dcm_code,
    has_transfer_syntax,
    without_pixel_data,
    write_dataset,
)
from harmonize.dicom.values import MONOCHROME, display_to_stored
from harmonize.errors import DicomError
from harmonize.io.dicomweb import DERIVED_SERIES  # a PACS listing leaves these series out

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
    instance_entropy: list[str] | None = None,
    transfer_syntax_uid: str | None = None,
    deidentify: DeidentifyOptions | None = None,
    model_hash: str | None = None,
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
        instance_entropy: values of this one source object (e.g. its URI and version) mixed
            into the new SOP Instance UID only: two source objects that share a SOP Instance UID
            (a copy, a re-send with other pixels) get different derived instances, in the same
            derived series.
        transfer_syntax_uid: output transfer syntax; default: the source's if it is one of
            `writable_transfer_syntaxes` other than implicit VR, else Explicit VR Little Endian.
        deidentify: de-identify the source's attributes by the PS3.15 Basic Profile with these
            options before the derived image's own are written (`harmonize.dicom.deidentify`):
            the Source Image Sequence then names the source by its remapped UIDs.
        model_hash: the model's content hash: the Contributing Equipment item's Device UID and
            Device Serial Number derive from it (with ``method``), so each model version is
            another device; None leaves both out.

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
    source_ts = (
        UID(str(header.file_meta.TransferSyntaxUID)) if has_transfer_syntax(header) else None
    )
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

    ds = copy.deepcopy(without_pixel_data(header))
    if deidentify is not None:
        deidentify_dataset(ds, deidentify)
    _make_derived_attributes(ds, source_ts, method, description, uid_entropy, instance_entropy)
    _add_contributing_equipment(ds, method, model_hash)

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
    return write_dataset(
        ds,
        failure="could not write the derived DICOM",
        fix="a source attribute has a value its VR cannot encode: fix the source header",
        enforce_file_format=True,
    )


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
    instance_entropy: list[str] | None = None,
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
        instance = [str(value) for value in instance_entropy or ()]
        ds.SOPInstanceUID = generate_uid(
            entropy_srcs=["sop", source_sop_instance, *entropy, *instance]
        )
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", source_series, *entropy])

    image_type = list(ds.get("ImageType", []) or [])
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    _set_text(ds, "SeriesDescription", f"{DERIVED_SERIES}{method})", max_chars=64)
    _set_text(
        ds,
        "DerivationDescription",
        f"Intensity harmonization by {method}: {description}",
        max_chars=1024,
    )

    purpose = dcm_code("121322", "Source image for image processing operation")
    source_ref = Dataset()
    source_ref.ReferencedSOPClassUID = source_sop_class
    source_ref.ReferencedSOPInstanceUID = source_sop_instance
    source_ref.PurposeOfReferenceCodeSequence = [purpose]
    ds.SourceImageSequence = [source_ref]

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


def _add_contributing_equipment(ds: Dataset, method: str, model_hash: str | None) -> None:
    """Append harmonize to the Contributing Equipment Sequence, as IHE AI Results asks: the
    method as model name, harmonize's version, and a device UID per model version."""
    equipment = Dataset()
    equipment.PurposeOfReferenceCodeSequence = [dcm_code("109102", "Processing Equipment")]
    equipment.Manufacturer = "harmonize"
    _set_text(equipment, "ManufacturerModelName", method, max_chars=64)
    equipment.SoftwareVersions = _package_version()
    if model_hash is not None:
        equipment.DeviceSerialNumber = str(model_hash)[:64]
        equipment.DeviceUID = generate_uid(entropy_srcs=["harmonize-device", method, model_hash])
    now = datetime.datetime.now(datetime.UTC)
    equipment.ContributionDateTime = now.strftime("%Y%m%d%H%M%S+0000")
    _set_text(equipment, "ContributionDescription", f"Intensity harmonization ({method})", 1024)
    ds.ContributingEquipmentSequence = [*ds.get("ContributingEquipmentSequence", []), equipment]


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


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("harmonize")
    except Exception:
        return "unknown"
