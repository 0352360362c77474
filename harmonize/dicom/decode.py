"""Decoding a DICOM image: parse the bytes, check that harmonize can decode it (both in
`harmonize.dicom.parse`), read its pixels (on a GPU when it can: `harmonize.dicom.gpu_decode`).

`decode_dicom` turns the bytes of a single-frame grayscale image into display intensities in
[0, 1] (through the grayscale pipeline of `harmonize.dicom.values`), plain metadata for the
manifest, and the header that `harmonize.dicom.encode.encode_derived` writes a derived image from.
Anything it cannot decode raises a `DicomError` that says why and what to do.
`decode_dicom_batch` does the same for a batch, decoding every frame the GPU can take in one call,
and gives each bad object's `DicomError` as its entry instead of raising it.

Example::

    image = decode_dicom(data)
    harmonized = my_method(image.pixels)          # float32, same shape, in [0, 1]
    out = encode_derived(image.header, harmonized, method="histogram", description="site A->B")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from harmonize.dicom import codecs, gpu_decode
from harmonize.dicom.parse import check_decodable, read_dataset
from harmonize.dicom.values import VoiKind, apply_grayscale_pipeline
from harmonize.errors import DicomError
from harmonize.io.archive import MAX_PIXELS


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
    process boundaries as `header_to_bytes`. ``decoder`` names what decoded the pixel data
    (``"cpu"``, or ``"nvimgcodec"`` on a GPU: `harmonize.dicom.gpu_decode`).
    """

    pixels: np.ndarray
    meta: ImageMeta
    header: Dataset
    decoder: str = gpu_decode.CPU


def decode_dicom(data: bytes, *, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode a single-frame MONOCHROME1/2 DICOM image to display intensities in [0, 1] (the
    batch of one of `decode_dicom_batch`).

    Args:
        data: the bytes of a DICOM Part-10 file (a bare dataset without preamble is accepted too).
        max_pixels: refuse, before decoding, an image whose header claims more pixels.

    Returns:
        The display pixels, the image's metadata and the header (dataset without Pixel Data).

    Raises:
        DicomError: ``data`` is not DICOM or is truncated, holds no pixel data (a DICOMDIR, a
            report, ...), is multi-frame or colour, claims more than ``max_pixels`` pixels, has
            native pixel data of another length than its header says, or its transfer syntax
            is unknown or cannot be decoded with the installed plugins.
    """
    (entry,) = decode_dicom_batch([data], max_pixels=max_pixels)
    if isinstance(entry, DicomError):
        raise entry
    return entry


def decode_dicom_batch(
    datas: Sequence[bytes], *, max_pixels: int = MAX_PIXELS
) -> list[DecodedImage | DicomError]:
    """Decode a batch of DICOM images as `decode_dicom` does each, the GPU's share in one call.

    Each object is parsed and checked on its own; the frames of every checked object the GPU
    can take are decoded in ONE nvImageCodec batch and checked against their headers
    (`gpu_decode.stored_pixels_of`: nothing without nvImageCodec and CUDA); every object the GPU
    did not decode is decoded on the CPU; then each goes through the grayscale pipeline.

    Returns:
        One entry per object, in order: its `DecodedImage` (``decoder`` says who decoded it), or
        the `DicomError` that `decode_dicom` raises for it; one bad object affects no other.
    """
    checked: list[Dataset | DicomError] = []
    for data in datas:
        try:
            ds = read_dataset(data)
            check_decodable(ds, max_pixels, data)
        except DicomError as err:
            checked.append(err)
        else:
            checked.append(ds)
    on_gpu = iter(gpu_decode.stored_pixels_of([c for c in checked if isinstance(c, Dataset)]))
    out: list[DecodedImage | DicomError] = []
    for entry in checked:
        if isinstance(entry, DicomError):
            out.append(entry)
            continue
        stored = next(on_gpu)
        try:
            out.append(_decoded(entry, stored))
        except DicomError as err:
            out.append(err)
    return out


def _decoded(ds: Dataset, on_gpu: np.ndarray | None) -> DecodedImage:
    """The checked image ``ds`` decoded: its stored values ``on_gpu`` (decoded there), or
    decoded on the CPU when None, then through the grayscale pipeline."""
    if on_gpu is not None:
        stored, decoder = on_gpu, gpu_decode.GPU
    else:
        stored, decoder = _decode_on_cpu(ds), gpu_decode.CPU
    display, voi_kind, center, width = apply_grayscale_pipeline(stored, ds)

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
        photometric=str(ds.PhotometricInterpretation),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        voi_kind=voi_kind,
        window_center=center,
        window_width=width,
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""),
    )
    return DecodedImage(pixels=display, meta=meta, header=ds, decoder=decoder)


def _decode_on_cpu(ds: Dataset) -> np.ndarray:
    """The stored values as an integer (rows, cols) array, decoded by pydicom's pixel handlers
    (the JPEG family always through harmonize's plugin: one decoder, and no log noise from
    plugins that cannot)."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    if codecs.is_available(tsyntax):
        ds.pixel_array_options(decoding_plugin=codecs.LABEL)
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
