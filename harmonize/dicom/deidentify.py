"""Basic de-identification of a derived image's header: patient names, IDs and birth dates.

This is NOT a PS3.15 confidentiality profile: UIDs, dates and private tags are handled only as
listed here, and burned-in text is untouched. `encode_derived(..., deidentify=True)` applies it.

Example::

    header = copy.deepcopy(image.header)
    deidentify(header)
    assert header.PatientName == "" and header.PatientIdentityRemoved == "YES"
"""

from __future__ import annotations

from pydicom.dataset import Dataset

# Patient-identifying attributes blanked (Type 2), blanked where present, or removed (Type 3).
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


def deidentify(ds: Dataset) -> None:
    """Blank or remove the attributes listed above and every private tag of ``ds``, in place.

    Marks the dataset with Patient Identity Removed = YES and a De-identification Method.
    """
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
