"""Tests for harmonize.dicom.deidentify: on its own and through encode_derived(deidentify=True)."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset

from harmonize.dicom.decode import decode_dicom
from harmonize.dicom.deidentify import deidentify
from harmonize.dicom.encode import encode_derived

from dicom_samples import read_testdata


def test_deidentify_blanks_patient_identity():
    image = decode_dicom(read_testdata("RG3_UNCR.dcm"))
    out = encode_derived(image.header, image.pixels, method="m", description="d", deidentify=True)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert (ds.PatientName, ds.PatientID, ds.PatientBirthDate) == ("", "", "")
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.StudyInstanceUID == image.header.StudyInstanceUID
    assert image.header.PatientID != ""  # the source header is untouched


def test_deidentify_blanks_removes_and_drops_private_tags_in_place():
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.StudyID = "S1"
    ds.InstitutionName = "General Hospital"
    ds.OtherPatientIDs = "X9"
    ds.StudyInstanceUID = "1.2.3"
    ds.add_new(0x00091001, "LO", "private")
    deidentify(ds)
    assert (ds.PatientName, ds.PatientID, ds.AccessionNumber, ds.StudyID) == ("", "", "", "")
    assert "ReferringPhysicianName" not in ds  # blanked only where present
    assert "InstitutionName" not in ds and "OtherPatientIDs" not in ds
    assert 0x00091001 not in ds  # private tags go
    assert ds.StudyInstanceUID == "1.2.3"  # UIDs are kept
    assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod.startswith("harmonize")
