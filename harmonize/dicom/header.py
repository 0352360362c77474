"""DICOM headers (datasets without Pixel Data) as bytes, to cross process boundaries compactly.

A run decodes an image in one process and writes its derived image in another: the header travels
between them as `header_to_bytes` and comes back as `header_from_bytes`. `write_dataset` is the one
place that turns a dataset into Part-10 bytes (the derived image is written through it too).
`dcm_code` makes one item of a code sequence (DICOM's own "DCM" scheme).

Example::

    restored = header_from_bytes(header_to_bytes(image.header))
    assert restored == image.header
"""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset

from harmonize.errors import DicomError

_PIXEL_DATA_TAG = 0x7FE00010


def header_to_bytes(ds: Dataset) -> bytes:
    """Serialise a header (a dataset without Pixel Data) compactly, file meta included.

    Example: ``header_from_bytes(header_to_bytes(image.header))`` equals ``image.header``.
    """
    return write_dataset(
        without_pixel_data(ds),
        failure="could not serialise the DICOM header",
        fix="an attribute has a value its VR cannot encode: fix it before writing",
    )


def header_from_bytes(data: bytes) -> Dataset:
    """The dataset `header_to_bytes` wrote."""
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as err:
        raise DicomError(
            f"could not read a serialised DICOM header ({type(err).__name__}: {err}); pass bytes "
            "made by header_to_bytes"
        ) from err


def without_pixel_data(ds: Dataset) -> Dataset:
    """A shallow copy of ``ds`` (file meta included) without Pixel Data; ``ds`` is untouched."""
    stripped = Dataset({tag: elem for tag, elem in ds.items() if tag != _PIXEL_DATA_TAG})
    if getattr(ds, "file_meta", None) is not None:
        stripped.file_meta = ds.file_meta
    return stripped


def has_transfer_syntax(ds: Dataset) -> bool:
    """Whether ``ds`` has file meta that names its Transfer Syntax UID."""
    return bool(getattr(ds, "file_meta", None)) and "TransferSyntaxUID" in ds.file_meta


def write_dataset(
    ds: Dataset, *, failure: str, fix: str, enforce_file_format: bool = False
) -> bytes:
    """``ds`` as DICOM bytes; a Part-10 file with ``enforce_file_format`` (see ``dcmwrite``).

    A dataset whose file meta names no transfer syntax is written explicit VR little endian.

    Raises:
        DicomError: "<failure> (<pydicom's error>); <fix>" when an attribute cannot be encoded.
    """
    known = has_transfer_syntax(ds)
    buffer = io.BytesIO()
    try:
        pydicom.dcmwrite(
            buffer,
            ds,
            implicit_vr=None if known else False,
            little_endian=None if known else True,
            enforce_file_format=enforce_file_format,
        )
    except Exception as err:
        raise DicomError(f"{failure} ({type(err).__name__}: {err}); {fix}") from err
    return buffer.getvalue()


def dcm_code(value: str, meaning: str) -> Dataset:
    """One code sequence item of the DCM coding scheme (PS3.16), e.g. a purpose of reference."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
