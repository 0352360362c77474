"""Tests for harmonize.dicom.header: headers across processes and the one dataset writer."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless

from harmonize.dicom.decode import decode_dicom
from harmonize.dicom.header import header_from_bytes, header_to_bytes, without_pixel_data
from harmonize.errors import DicomError

from dicom_samples import read_testdata


def test_header_bytes_round_trip_keeps_transfer_syntax():
    header = decode_dicom(read_testdata("RG3_J2KR.dcm")).header
    data = header_to_bytes(header)
    assert len(data) < 10_000
    restored = header_from_bytes(data)
    assert restored == header
    assert restored.file_meta.TransferSyntaxUID == JPEG2000Lossless


def test_header_without_file_meta_round_trips_and_pixel_data_is_dropped():
    ds = Dataset()
    ds.PatientName = "Test^Patient"
    ds.Rows = 5
    ds.PixelData = b"\x00" * 8
    restored = header_from_bytes(header_to_bytes(ds))
    assert (restored.PatientName, restored.Rows) == ("Test^Patient", 5)
    assert "PixelData" not in restored and "PixelData" not in without_pixel_data(ds)
    assert "PixelData" in ds  # the source dataset is untouched


def test_unencodable_header_names_the_failure_and_the_fix():
    ds = Dataset()
    with pytest.warns(UserWarning):  # pydicom warns on assignment, fails on writing
        ds.Rows = 70_000  # US holds at most 65535
    expected = r"(?s)^could not serialise the DICOM header \(OSError: .*\); an attribute has a "
    with pytest.raises(DicomError, match=expected + "value its VR cannot encode: fix it before"):
        header_to_bytes(ds)
