"""Tests for harmonize.dicom.encode: derived DICOM output, decode -> encode -> decode round trips,
provenance, transfer syntaxes, conformance (dciodvfy) and bad input."""

from __future__ import annotations

import copy
import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

import harmonize
from harmonize.dicom.decode import decode_dicom
from harmonize.dicom.encode import encode_derived
from harmonize.dicom.values import display_to_stored
from harmonize.errors import DicomError

from dicom_samples import data_path, make_image, random_values, read_testdata

LOSSLESS_OUTPUTS = [ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless]


def quantisation_step(bits: int) -> float:
    return 1.0 / (2**bits - 1)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("tsyntax", [*LOSSLESS_OUTPUTS, ImplicitVRLittleEndian])
def test_round_trip_within_one_quantisation_step(bits, photometric, tsyntax):
    source = decode_dicom(make_image(random_values(bits, False), bits, photometric=photometric))
    harmonized = np.random.default_rng(1).random(source.pixels.shape, dtype=np.float32)
    out = encode_derived(
        source.header, harmonized, method="test", description="d", transfer_syntax_uid=tsyntax
    )
    derived = decode_dicom(out)
    assert derived.meta.transfer_syntax_uid == tsyntax
    assert derived.meta.photometric == photometric and derived.meta.voi_kind == "window"
    error = np.abs(derived.pixels.astype(np.float64) - harmonized)
    assert error.max() <= 0.5 * quantisation_step(bits) + 1e-6  # rounding: half a step
    stored = pydicom.dcmread(io.BytesIO(out)).pixel_array
    np.testing.assert_array_equal(stored, display_to_stored(harmonized, bits, photometric))


@pytest.mark.parametrize("tsyntax", LOSSLESS_OUTPUTS)
def test_real_radiograph_round_trip(tsyntax):
    source = decode_dicom(read_testdata("RG3_UNCR.dcm"))
    harmonized = np.sqrt(source.pixels)  # a plausible intensity remapping
    out = encode_derived(
        source.header, harmonized, method="gamma", description="d", transfer_syntax_uid=tsyntax
    )
    derived = decode_dicom(out)
    assert np.abs(derived.pixels - harmonized).max() <= quantisation_step(10)


@pytest.fixture(scope="module")
def rg1_derived() -> tuple[Dataset, Dataset]:
    source = pydicom.dcmread(data_path("RG1_J2KR.dcm"))
    image = decode_dicom(read_testdata("RG1_J2KR.dcm"))
    out = encode_derived(
        image.header, 1.0 - image.pixels, method="cyclegan", description="site A to site B"
    )
    return source, pydicom.dcmread(io.BytesIO(out))


def test_derived_has_provenance_and_keeps_source_attributes(rg1_derived):
    source, derived = rg1_derived
    assert derived.SOPInstanceUID != source.SOPInstanceUID
    assert derived.SeriesInstanceUID != source.SeriesInstanceUID
    assert derived.file_meta.MediaStorageSOPInstanceUID == derived.SOPInstanceUID
    assert derived.file_meta.MediaStorageSOPClassUID == source.SOPClassUID
    assert list(derived.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert list(derived.ImageType[2:]) == list(source.ImageType[2:])
    reference = derived.SourceImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == source.SOPClassUID
    assert "cyclegan" in derived.SeriesDescription and "cyclegan" in derived.DerivationDescription
    assert derived.ContributingEquipmentSequence[-1].Manufacturer == "harmonize"
    for keyword in (
        "SOPClassUID",
        "StudyInstanceUID",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyDate",
        "AccessionNumber",
        "Manufacturer",
        "BodyPartExamined",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
    ):
        assert derived[keyword].value == source[keyword].value, keyword
    assert derived.PixelRepresentation == 0
    assert (derived.WindowCenter, derived.WindowWidth) == (2**14, 2**15)
    assert "VOILUTSequence" not in derived and "RescaleSlope" not in derived
    assert derived.file_meta.TransferSyntaxUID == JPEG2000Lossless  # the lossless source's


def test_output_transfer_syntax_defaults():
    lossy = decode_dicom(read_testdata("RG3_J2KI.dcm"))
    out = pydicom.dcmread(
        io.BytesIO(encode_derived(lossy.header, lossy.pixels, method="m", description="d"))
    )
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.LossyImageCompression == "01"


def test_identity_rescale_replaces_source_rescale():
    values = random_values(12, signed=True)
    source = decode_dicom(make_image(values, 12, rescale=(2.0, 100.0), window=(0, 4000)))
    out = pydicom.dcmread(
        io.BytesIO(encode_derived(source.header, source.pixels, method="m", description="d"))
    )
    assert (out.RescaleSlope, out.RescaleIntercept, out.RescaleType) == (1, 0, "US")
    assert out.PixelRepresentation == 0 and out.BitsStored == 12


def test_uids_are_deterministic_with_entropy():
    image = decode_dicom(make_image(random_values(12, False), 12))

    def uids(entropy):
        out = encode_derived(
            image.header, image.pixels, method="m", description="d", uid_entropy=entropy
        )
        ds = pydicom.dcmread(io.BytesIO(out), stop_before_pixels=True)
        return ds.SOPInstanceUID, ds.SeriesInstanceUID

    assert uids(["histogram", "model-abc"]) == uids(["histogram", "model-abc"])
    assert uids(["histogram", "model-abc"])[0] != uids(["histogram", "model-xyz"])[0]
    assert uids(None) != uids(None)
    # another image of the same source series lands in the same derived series
    other = copy.deepcopy(image.header)
    other.SOPInstanceUID = generate_uid()
    out = encode_derived(other, image.pixels, method="m", description="d", uid_entropy=["h", "1"])
    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.SeriesInstanceUID == uids(["h", "1"])[1] and ds.SOPInstanceUID != uids(["h", "1"])[0]


def test_two_sources_sharing_a_uid_get_distinct_instances_in_one_series():
    image = decode_dicom(make_image(random_values(12, False), 12))

    def uids(instance):
        out = encode_derived(
            image.header, image.pixels, method="m", description="d", uid_entropy=["h", "1"],
            instance_entropy=instance,
        )  # fmt: skip
        ds = pydicom.dcmread(io.BytesIO(out), stop_before_pixels=True)
        return ds.SOPInstanceUID, ds.SeriesInstanceUID

    a, b = uids(["s3://a/x.dcm", "e1"]), uids(["s3://a/copy.dcm", "e1"])
    assert a[0] != b[0] and a[1] == b[1]
    assert uids(["s3://a/x.dcm", "e1"]) == a  # deterministic


def test_contributing_equipment_names_method_version_and_model():
    image = decode_dicom(read_testdata("RG3_UNCR.dcm"))

    def harmonizer_item(model_hash: str | None, method: str = "cyclegan") -> Dataset:
        out = encode_derived(
            image.header, image.pixels, method=method, description="d", model_hash=model_hash
        )
        return pydicom.dcmread(io.BytesIO(out)).ContributingEquipmentSequence[-1]

    item = harmonizer_item("a" * 64)
    assert (item.Manufacturer, item.ManufacturerModelName) == ("harmonize", "cyclegan")
    assert item.SoftwareVersions == harmonize.__version__ and item.DeviceSerialNumber == "a" * 64
    assert item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    assert item.DeviceUID == harmonizer_item("a" * 64).DeviceUID  # same model, same device
    assert item.DeviceUID != harmonizer_item("b" * 64).DeviceUID  # a new model version
    assert item.DeviceUID != harmonizer_item("a" * 64, method="unit").DeviceUID
    assert "DeviceUID" not in harmonizer_item(None)


def dciodvfy_errors(dciodvfy: str, path: Path) -> set[str]:
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return {" ".join(line.split()) for line in lines if line.strip().startswith("Error")}


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG3_UNCR.dcm", "RG1_J2KR.dcm", "synthetic"])
def test_derived_image_adds_no_conformance_errors(name, tmp_path, dciodvfy):
    if name == "synthetic":  # exercises the identity rescale and the dropped VOI LUT Sequence
        values = random_values(8, signed=False)
        source_path = tmp_path / "source.dcm"
        source_path.write_bytes(
            make_image(values, 8, rescale=(1.0, -10.0), voi_lut=(8, 0, list(range(256))))
        )
    else:
        source_path = data_path(name)
    image = decode_dicom(source_path.read_bytes())
    derived_path = tmp_path / "derived.dcm"
    derived_path.write_bytes(
        encode_derived(
            image.header, image.pixels, method="histogram", description="test", model_hash="f" * 64
        )
    )
    source_errors = dciodvfy_errors(dciodvfy, source_path)
    derived_errors = dciodvfy_errors(dciodvfy, derived_path)
    assert derived_errors - source_errors == set()


# --------------------------------------------------------------------------------------------
# Bad input


def test_encode_rejects_bad_pixels():
    image = decode_dicom(make_image(random_values(12, False), 12))
    with pytest.raises(DicomError, match="keep the source's size"):
        encode_derived(image.header, image.pixels[:-1], method="m", description="d")
    bad = image.pixels.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DicomError, match="NaN"):
        encode_derived(image.header, bad, method="m", description="d")


@pytest.mark.parametrize(
    ("shape", "tsyntax", "message"),
    [
        ((36, 44), "1.2.840.10008.1.2.4.50", "cannot write transfer syntax"),  # JPEG baseline
        ((16, 64), JPEG2000Lossless, "at least 32 pixels"),
    ],
    ids=["lossy", "j2k-too-small"],
)
def test_encode_rejects_unwritable_transfer_syntax(shape, tsyntax, message):
    image = decode_dicom(make_image(random_values(12, False, shape=shape), 12))
    with pytest.raises(DicomError, match=message):
        encode_derived(
            image.header, image.pixels, method="m", description="d", transfer_syntax_uid=tsyntax
        )


def test_small_jpeg2000_source_is_written_uncompressed():
    tiny = decode_dicom(make_image(random_values(12, False, shape=(16, 64)), 12))
    tiny.header.file_meta.TransferSyntaxUID = JPEG2000Lossless  # as if the source were J2K
    out = encode_derived(tiny.header, tiny.pixels, method="m", description="d")
    assert decode_dicom(out).meta.transfer_syntax_uid == ExplicitVRLittleEndian


def test_unencodable_source_attribute_names_the_failure_and_the_fix():
    image = decode_dicom(make_image(random_values(12, False), 12))
    with pytest.warns(UserWarning):  # pydicom warns on assignment, fails on writing
        image.header.SamplesPerPixelUsed = 70_000  # US holds at most 65535
    expected = r"(?s)^could not write the derived DICOM \(OSError: .*\); a source attribute has "
    with pytest.raises(DicomError, match=expected + "a value its VR cannot encode: fix the source"):
        encode_derived(image.header, image.pixels, method="m", description="d")
