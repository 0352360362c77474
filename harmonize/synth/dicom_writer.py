"""Write one synthetic or wrapped radiograph as a CR Image Storage DICOM file (bytes).

The dataset carries the Patient, General Study, Patient Study, General Series, CR Series, General
Equipment, General Image, Image Pixel, CR Image, VOI LUT and SOP Common modules, and is encoded in
the profile's transfer syntax. Identifiers are fake but plausible and derived deterministically
from a key, so the same (seed, site, index) always gives the same UIDs and names.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from harmonize import __version__
from harmonize.errors import DicomError
from harmonize.synth.arrays import StoredArray
from harmonize.synth.profiles import SiteProfile

_SURNAMES = (
    "Smith",
    "Johnson",
    "Garcia",
    "Chen",
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Brown",
    "Miller",
    "Davis",
    "Lopez",
    "Wilson",
    "Taylor",
    "Nguyen",
    "Huang",
    "Zhao",
    "Moore",
    "Martin",
    "Lee",
    "Walker",
    "Young",
    "Allen",
    "Wright",
    "Scott",
    "Hill",
    "Green",
    "Adams",
    "Baker",
    "Lin",
)
_GIVEN = {
    "F": (
        "Mary",
        "Linda",
        "Susan",
        "Karen",
        "Lisa",
        "Nancy",
        "Li Na",
        "Mei",
        "Xiu Ying",
        "Fang",
        "Ana",
        "Grace",
        "Ruth",
        "Helen",
        "Jing",
        "Yan",
        "Sarah",
        "Emma",
        "Rosa",
        "Julia",
    ),
    "M": (
        "James",
        "John",
        "Robert",
        "Michael",
        "David",
        "Wei",
        "Jun",
        "Tao",
        "Ming",
        "Qiang",
        "Carlos",
        "Joseph",
        "Thomas",
        "Daniel",
        "Hao",
        "Lei",
        "Paul",
        "Mark",
        "Peter",
        "Kevin",
    ),
}


@dataclass(frozen=True)
class Identity:
    """Patient, study and instance identifiers of one image (all synthetic)."""

    sop_uid: str
    study_uid: str
    series_uid: str
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str  # "M", "F" or "" (unknown)
    age: int | None
    study_date: str
    study_time: str
    accession: str


def make_identity(
    key: Sequence[object], rng: np.random.Generator, sex: str, age: int | None, id_prefix: str
) -> Identity:
    """Deterministic identifiers: UIDs hashed from ``key``, names and dates drawn from ``rng``.

    ``key`` should identify the image uniquely, e.g. ``["synth", seed, site, index]``. An
    unknown ``sex`` ("") or ``age`` (None) leaves the sex and birth date empty.
    """
    parts = [str(k) for k in key]
    day = dt.date(2018, 1, 1) + dt.timedelta(days=int(rng.integers(0, 5 * 365)))
    seconds = int(rng.integers(7 * 3600, 19 * 3600))
    birth_date = ""
    if age is not None:
        born = day - dt.timedelta(days=int(age * 365.25) + int(rng.integers(1, 365)))
        # The age on the study date, consistent with the birth date.
        age = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
        birth_date = born.strftime("%Y%m%d")
    pool = _GIVEN.get(sex, _GIVEN["F"] + _GIVEN["M"])
    surname = _SURNAMES[int(rng.integers(len(_SURNAMES)))]
    given = pool[int(rng.integers(len(pool)))]
    return Identity(
        sop_uid=generate_uid(entropy_srcs=[*parts, "sop"]),
        study_uid=generate_uid(entropy_srcs=[*parts, "study"]),
        series_uid=generate_uid(entropy_srcs=[*parts, "series"]),
        patient_name=f"{surname}^{given}",
        patient_id=f"{id_prefix}{int(rng.integers(10**6, 10**7))}",
        birth_date=birth_date,
        sex=sex if sex in _GIVEN else "",
        age=age,
        study_date=day.strftime("%Y%m%d"),
        study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        accession=f"A{int(rng.integers(10**7, 10**8))}",
    )


def build_dataset(
    pixels: StoredArray,
    profile: SiteProfile,
    identity: Identity,
    *,
    derived_from: str | None = None,
    exposure_mas: float = 2.5,
) -> Dataset:
    """The CR dataset for ``pixels`` (stored values), uncompressed; see :func:`encode`.

    ``derived_from`` describes the source of a wrapped (not synthesized) image.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint16:
        raise DicomError(f"pixels must be a 2-D uint16 array, got {pixels.dtype} {pixels.shape}")
    if int(pixels.max(initial=0)) > profile.max_stored:
        raise DicomError(f"pixel values exceed bits_stored={profile.bits_stored}")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"] if derived_from else ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = identity.sop_uid
    ds.InstanceCreationDate = ds.StudyDate = ds.SeriesDate = identity.study_date
    ds.ContentDate = ds.AcquisitionDate = identity.study_date
    ds.InstanceCreationTime = ds.StudyTime = ds.SeriesTime = identity.study_time
    ds.ContentTime = ds.AcquisitionTime = identity.study_time
    ds.AccessionNumber = identity.accession
    ds.Modality = "CR"
    ds.Manufacturer = profile.vendor.manufacturer
    ds.InstitutionName = profile.vendor.institution
    ds.ReferringPhysicianName = ""
    ds.StationName = profile.vendor.station[:16]
    ds.StudyDescription = "CHEST PA"
    ds.SeriesDescription = "PA"
    ds.ManufacturerModelName = profile.vendor.model
    ds.SoftwareVersions = f"harmonize {__version__}"
    if derived_from:
        ds.DerivationDescription = derived_from[:1024]
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = identity.sex
    if identity.age is not None:
        ds.PatientAge = f"{identity.age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.KVP = f"{profile.kvp:g}"
    ds.DistanceSourceToDetector = "1800"
    ds.Exposure = str(max(1, round(exposure_mas)))
    ds.ImagerPixelSpacing = [f"{profile.field_mm / pixels.shape[0]:.6g}"] * 2
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = identity.study_uid
    ds.SeriesInstanceUID = identity.series_uid
    ds.StudyID = identity.accession[-8:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]  # PA: rows run to the patient's left, columns to the feet
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = profile.photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = profile.bits_stored
    ds.HighBit = profile.bits_stored - 1
    ds.PixelRepresentation = 0
    # The window is applied to modality (rescaled) values, so it goes through the rescale.
    slope, intercept = profile.rescale_slope, profile.rescale_intercept
    ds.WindowCenter = f"{profile.window.center * slope + intercept:.6g}"
    ds.WindowWidth = f"{max(profile.window.width * slope, 1):.6g}"
    ds.WindowCenterWidthExplanation = f"{profile.name} default"
    ds.RescaleIntercept = f"{intercept:.6g}"
    ds.RescaleSlope = f"{slope:.6g}"
    ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def encode(ds: Dataset, transfer_syntax: str) -> bytes:
    """``ds`` (uncompressed) as DICOM file bytes in ``transfer_syntax``."""
    try:
        if transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax, generate_instance_uid=False)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    except (ValueError, RuntimeError, NotImplementedError) as err:
        raise DicomError(f"cannot encode {ds.SOPInstanceUID} as {transfer_syntax}: {err}") from err
    return buffer.getvalue()
