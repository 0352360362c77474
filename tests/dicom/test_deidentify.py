"""Tests for harmonize.dicom.deidentify, through encode_derived(deidentify=...): every attribute of
PS3.15 Table E.1-1 (2024b) filled into real headers, then checked against its Basic Profile action;
pseudonyms keyed on the secret; the retain options; conformance (dciodvfy)."""

from __future__ import annotations

import copy
import csv
import datetime
import io
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from harmonize.dicom.decode import decode_dicom
from harmonize.dicom.deidentify import DeidentifyOptions, pseudonymous_uid
from harmonize.dicom.encode import encode_derived
from harmonize.errors import ConfigError, DicomError

from dicom_samples import read_testdata

SECRET = "correct horse battery staple"
OTHER_SECRET = "another secret, another night"
SOURCES = ["RG3_UNCR.dcm", "CT_small.dcm", "MR_small.dcm"]  # CR, CT, MR

# What encode_derived writes (or drops) itself after de-identifying (the derived image's own
# provenance, no value of the source's): checked to differ from the source's value.
AUTHORED = {
    "InstanceCreatorUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "SeriesDescription",
    "DerivationDescription",
    "SourceImageSequence",
    "InstanceCreationDate",
    "InstanceCreationTime",
}
# Rows of the table that cannot sit in a stored dataset: command (0000) and file meta (0002).
UNSTORABLE_GROUPS = (0x0000, 0x0002)


def dciodvfy_errors(dciodvfy: str, path: Path) -> set[str]:
    """dciodvfy's error lines for ``path`` (as tests/dicom/test_encode.py reads them)."""
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return {" ".join(line.split()) for line in lines if line.strip().startswith("Error")}


def profile_rows() -> list[dict[str, str]]:
    """Table E.1-1 as shipped beside harmonize.dicom.deidentify, parsed here on its own."""
    text = resources.files("harmonize.dicom").joinpath("ps315_basic_profile.tsv").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def test_profile_table_is_the_standards():
    rows = profile_rows()
    assert len(rows) == 621  # PS3.15 2024b Table E.1-1
    by_keyword = {row["keyword"]: row["basic"] for row in rows if row["keyword"]}
    # spot checks against the standard's text
    assert by_keyword["PatientName"] == "Z" and by_keyword["PatientID"] == "Z/D"
    assert by_keyword["StudyInstanceUID"] == "U" and by_keyword["InstitutionName"] == "X/Z/D"
    assert by_keyword["SourceImageSequence"] == "X/Z/U*" and by_keyword["PatientAge"] == "X"
    assert by_keyword["StudyDate"] == "Z" and by_keyword["ContentDate"] == "Z/D"
    assert {row["basic"] for row in rows} == {
        "X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"
    }  # fmt: skip


def _value(vr: str, n: int, action: str) -> object:
    """A distinct value of ``vr`` for the n-th attribute; text values carry a marker ORIGnnnnX
    that can be searched for in the output bytes."""
    marker = f"ORIG{n:04d}X"
    day = datetime.date(1901, 1, 1) + datetime.timedelta(days=800 * (n % 130))
    time = f"{n % 24:02d}{n % 60:02d}{(n // 60) % 60:02d}.{n:06d}"
    if vr == "SQ":
        item = Dataset()
        if action == "X/Z/U*":
            item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
            item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{1000 + n}"
        else:
            item.CodeMeaning = marker
        return [item]
    values: dict[str, object] = {
        "PN": f"{marker}^Given",
        "UI": f"1.2.826.0.1.3680043.8.498.77.{1000 + n}",
        "DA": day.strftime("%Y%m%d"),
        "TM": time,
        "DT": day.strftime("%Y%m%d") + time,
        "AS": f"{n % 100:03d}Y",
        "IS": str(n + 1),
        "DS": f"{n + 1}.5",
        "UR": f"http://orig{n:04d}x.example",
        "AT": Tag(0x0010, 0x0010),
    }
    if vr in values:
        return values[vr]
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"):
        return n + 1
    if vr.startswith("O") or vr == "UN":
        return marker.encode() + b"\x00"  # even length
    return marker  # AE CS LO LT SH ST UC UT


def filled_source(name: str) -> tuple[Dataset, dict[str, tuple[str, object]], list[bytes]]:
    """A real header with every attribute of the table its VR allows set to a distinct value;
    returns it, {keyword: (action, value)} and the markers that must not reach the output."""
    header = decode_dicom(read_testdata(name)).header
    filled: dict[str, tuple[str, object]] = {}
    markers: list[bytes] = []
    for n, row in enumerate(profile_rows()):
        keyword = row["keyword"]
        if not keyword or keyword in AUTHORED - {"SOPInstanceUID", "SeriesInstanceUID"}:
            continue
        tag = Tag(int(row["tag"], 16))
        if tag.group in UNSTORABLE_GROUPS:
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        value = header[keyword].value if keyword in header else _value(vr, n, row["basic"])
        if keyword not in header:
            header.add_new(tag, vr, value)
        filled[keyword] = (row["basic"], copy.deepcopy(value))
        if isinstance(value, str) and "ORIG" in value.upper():
            markers.append(value.encode())
    header.add_new(0x00090010, "LO", "ORIGPRIVATECREATOR")
    header.add_new(0x00091001, "LO", "ORIGPRIVATEVALUE")
    header.add_new(0x60004000, "LT", "ORIGOVERLAYCOMMENT")
    header.add_new(0x50002500, "LO", "ORIGCURVELABEL")
    markers += [b"ORIGPRIVATE", b"ORIGOVERLAYCOMMENT", b"ORIGCURVELABEL"]
    header.BurnedInAnnotation = "NO"
    return header, filled, markers


def _source_with_pixels(name: str) -> tuple[Dataset, object]:
    image = decode_dicom(read_testdata(name))
    return image.header, image.pixels


@pytest.mark.parametrize("name", SOURCES)
def test_every_profile_attribute_gets_its_action(name):
    header, filled, markers = filled_source(name)
    pixels = decode_dicom(read_testdata(name)).pixels
    options = DeidentifyOptions(secret=SECRET)
    out = encode_derived(header, pixels, method="histogram", description="d", deidentify=options)
    ds = pydicom.dcmread(io.BytesIO(out))
    wrong = []
    for keyword, (action, original) in filled.items():
        present = keyword in ds
        value = ds[keyword].value if present else None
        if keyword in AUTHORED:
            ok = value != original
        elif action == "X":
            ok = not present
        elif action == "U":
            ok = value == pseudonymous_uid(str(original), options)
        elif action == "X/Z/U*":
            ok = not present or all(
                item.ReferencedSOPInstanceUID
                == pseudonymous_uid(ref.ReferencedSOPInstanceUID, options)
                for item, ref in zip(value, original, strict=True)
            )
        else:  # Z, D and their combinations with X: gone, empty (Z) or a dummy (D, Z)
            empty = present and value in (None, "", b"", [])
            ok = (
                ("X" in action and not present)
                or ("Z" in action and empty)
                or (present and not empty and value != original)
            )
        if not ok:
            wrong.append(f"{keyword} ({action}): {original!r} -> {value!r}")
    assert wrong == []
    assert not [m for m in markers if m in out]  # no original text anywhere in the file
    assert ds.PatientIdentityRemoved == "YES" and ds.LongitudinalTemporalInformationModified
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]


def _identity(options: DeidentifyOptions, name: str = "RG3_UNCR.dcm") -> tuple[str, ...]:
    header, pixels = _source_with_pixels(name)
    out = encode_derived(
        header, pixels, method="m", description="d", deidentify=options, uid_entropy=["m", "1"]
    )
    ds = pydicom.dcmread(io.BytesIO(out), stop_before_pixels=True)
    reference = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
    return str(ds.PatientName), ds.PatientID, ds.StudyInstanceUID, ds.SOPInstanceUID, reference


def test_pseudonyms_are_keyed_on_the_secret():
    header, _ = _source_with_pixels("RG3_UNCR.dcm")
    first = _identity(DeidentifyOptions(secret=SECRET))
    assert first == _identity(DeidentifyOptions(secret=SECRET))  # the same every night
    other = _identity(DeidentifyOptions(secret=OTHER_SECRET))
    assert all(a != b for a, b in zip(first, other, strict=True))
    original = (str(header.PatientName), header.PatientID, header.StudyInstanceUID)
    assert not set(original) & set(first)
    # the derived image names its source by the source's pseudonymous UID, as image_id does
    assert first[4] == pseudonymous_uid(header.SOPInstanceUID, DeidentifyOptions(secret=SECRET))


def test_pseudonymous_uid_is_the_same_in_another_process():
    code = (
        "from harmonize.dicom.deidentify import DeidentifyOptions, pseudonymous_uid; "
        f"print(pseudonymous_uid('1.2.3.4', DeidentifyOptions(secret={SECRET!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    here = pseudonymous_uid("1.2.3.4", DeidentifyOptions(secret=SECRET))
    assert result.stdout.strip() == here and here != "1.2.3.4" and len(here) <= 64


@pytest.mark.parametrize(
    ("retain_dates", "flag", "code"),
    [("modified", "MODIFIED", "113107"), ("full", "UNMODIFIED", "113106")],
)
def test_retain_dates(retain_dates, flag, code):
    header, pixels = _source_with_pixels("CT_small.dcm")
    options = DeidentifyOptions(secret=SECRET, retain_dates=retain_dates, retain_device=True)
    ds = pydicom.dcmread(
        io.BytesIO(encode_derived(header, pixels, method="m", description="d", deidentify=options))
    )
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert (
        codes == ["113100", code, "113109"] and ds.LongitudinalTemporalInformationModified == flag
    )
    shifts = {
        (_date(ds[k].value) - _date(header[k].value)).days
        for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
        if k in header
    }
    if retain_dates == "full":
        assert shifts == {0}
    else:  # one secret-keyed shift for every date: intervals kept
        assert len(shifts) == 1 and -730 <= shifts.pop() <= -62


def _date(text: str) -> datetime.date:
    return datetime.datetime.strptime(text, "%Y%m%d").date()


def test_retain_device_keeps_device_identity():
    header, pixels = _source_with_pixels("RG3_UNCR.dcm")
    header.DeviceSerialNumber, header.StationName = "SN-12345", "XRAY-ROOM-3"

    def device(retain: bool) -> tuple[str, str]:
        options = DeidentifyOptions(secret=SECRET, retain_device=retain)
        out = encode_derived(header, pixels, method="m", description="d", deidentify=options)
        ds = pydicom.dcmread(io.BytesIO(out), stop_before_pixels=True)
        return ds.get("DeviceSerialNumber", ""), ds.get("StationName", "")

    assert device(True) == ("SN-12345", "XRAY-ROOM-3")
    assert not {"SN-12345", "XRAY-ROOM-3"} & set(device(False))


@pytest.mark.parametrize("name", SOURCES)
def test_deidentified_image_adds_no_conformance_errors(name, tmp_path, dciodvfy):
    header, pixels = _source_with_pixels(name)
    plain, deidentified = tmp_path / "plain.dcm", tmp_path / "deid.dcm"
    plain.write_bytes(encode_derived(header, pixels, method="m", description="d"))
    options = DeidentifyOptions(secret=SECRET)
    deidentified.write_bytes(
        encode_derived(header, pixels, method="m", description="d", deidentify=options)
    )
    assert dciodvfy_errors(dciodvfy, deidentified) - dciodvfy_errors(dciodvfy, plain) == set()


def test_burned_in_annotation_is_refused():
    header, pixels = _source_with_pixels("RG3_UNCR.dcm")
    header.BurnedInAnnotation = "YES"
    with pytest.raises(DicomError, match="burned-in annotation"):
        encode_derived(
            header, pixels, method="m", description="d", deidentify=DeidentifyOptions(SECRET)
        )


def test_options_are_checked_and_keep_the_secret_out_of_sight():
    with pytest.raises(ConfigError, match="at least 16 characters"):
        DeidentifyOptions(secret="short")
    with pytest.raises(ConfigError, match="retain_dates must be one of"):
        DeidentifyOptions(secret=SECRET, retain_dates="shifted")
    options = DeidentifyOptions(secret=SECRET)
    assert SECRET not in repr(options) and SECRET not in str(options.key())
    assert options.fingerprint != DeidentifyOptions(secret=OTHER_SECRET).fingerprint
    assert len(options.fingerprint) == 16
