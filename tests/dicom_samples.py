"""DICOM inputs of the tests in tests/dicom/: pydicom-data files and small synthetic CR images.

`make_image` builds a file holding any values with the window, VOI function, rescale or LUTs asked
for; `reference_display` computes what decoding it must give, with pydicom's own LUT functions.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid


def data_path(name: str) -> Path:
    """The path of a pydicom-data file; skips the test when pydicom-data lacks it."""
    path = pytest.importorskip("pydicom.data").get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in pydicom-data")
    return Path(path)


def read_testdata(name: str) -> bytes:
    return data_path(name).read_bytes()


def make_image(
    values: np.ndarray,
    bits_stored: int,
    *,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    voi_function: str | None = None,
    rescale: tuple[float, float] | None = None,
    modality_lut: tuple[int, int, list[int]] | None = None,
    voi_lut: tuple[int, int, list[int]] | None = None,
) -> bytes:
    """A minimal CR image file holding ``values`` (dtype sets bits allocated and signedness)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "P123"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "A1"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "CHEST"]
    ds.set_pixel_data(values, photometric, bits_stored, generate_instance_uid=False)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    for keyword, lut in (("ModalityLUTSequence", modality_lut), ("VOILUTSequence", voi_lut)):
        if lut is not None:
            bits, first, data = lut
            item = Dataset()
            item.LUTDescriptor = [len(data), first, bits]
            item.LUTData = data
            item["LUTData"].VR = "US"
            if keyword == "ModalityLUTSequence":
                item.ModalityLUTType = "US"
            setattr(ds, keyword, [item])
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def same_message(a: BaseException, b: BaseException) -> bool:
    """The same error text, but for object addresses (a decoder plugin may name its buffer)."""
    return re.sub(r"0x[0-9a-f]+", "0x", str(a)) == re.sub(r"0x[0-9a-f]+", "0x", str(b))


def random_values(bits: int, signed: bool, shape=(36, 44), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    dtype = (np.int8 if signed else np.uint8) if bits <= 8 else (np.int16 if signed else np.uint16)
    values = rng.integers(lo, hi, size=shape, endpoint=True)
    values.flat[:2] = [lo, hi]  # the full range is present
    return values.astype(dtype)


def reference_display(data: bytes) -> np.ndarray:
    """Display intensities computed directly with pydicom's LUT functions."""
    ds = pydicom.dcmread(io.BytesIO(data))
    values = apply_modality_lut(ds.pixel_array, ds)
    if "VOILUTSequence" in ds:
        unit = apply_voi_lut(values, ds) / (2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    elif "WindowCenter" in ds:
        # pydicom's windowing output range: the stored range, through the rescale if any
        bits = ds.BitsStored
        lo, hi = (
            (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            if ds.PixelRepresentation
            else (0, 2**bits - 1)
        )
        if "RescaleSlope" in ds:
            lo, hi = (v * ds.RescaleSlope + ds.RescaleIntercept for v in (lo, hi))
        unit = (apply_voi_lut(values, ds) - lo) / (hi - lo)
    else:
        unit = (values - values.min()) / (values.max() - values.min())
    return 1.0 - unit if ds.PhotometricInterpretation == "MONOCHROME1" else unit
