"""Tests for harmonize.dicom: decoding against pydicom's own pipeline; derived DICOM output."""

from __future__ import annotations

import copy
import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from harmonize.dicom import (
    decode_dicom,
    display_to_stored,
    encode_derived,
    header_from_bytes,
    header_to_bytes,
    stored_to_display,
    window_to_unit,
)
from harmonize.errors import DicomError

get_testdata_file = pytest.importorskip("pydicom.data").get_testdata_file

LOSSLESS_OUTPUTS = [ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless]


def data_path(name: str) -> Path:
    path = get_testdata_file(name)
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


# --------------------------------------------------------------------------------------------
# Decoding real CR chest radiographs


@pytest.mark.parametrize("site", ["RG1", "RG3"])
def test_jpeg2000_lossless_decodes_identical_to_uncompressed(site):
    plain = decode_dicom(read_testdata(f"{site}_UNCR.dcm"))
    j2k = decode_dicom(read_testdata(f"{site}_J2KR.dcm"))
    np.testing.assert_array_equal(j2k.pixels, plain.pixels)
    assert j2k.meta.transfer_syntax_uid == JPEG2000Lossless
    assert plain.meta.transfer_syntax_uid == ExplicitVRLittleEndian
    assert j2k.meta.window_center == plain.meta.window_center


def test_lossy_jpeg2000_decodes_identical_to_its_uncompressed_copy():
    np.testing.assert_array_equal(
        decode_dicom(read_testdata("RG3_J2KI.dcm")).pixels,
        decode_dicom(read_testdata("RG3_UNCI.dcm")).pixels,
    )


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG3_UNCR.dcm"])
def test_real_radiograph_matches_pydicom_reference(name):
    data = read_testdata(name)
    image = decode_dicom(data)
    assert image.pixels.dtype == np.float32
    np.testing.assert_allclose(image.pixels, reference_display(data), atol=2e-6)
    assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
    assert "PixelData" not in image.header


def test_rg1_metadata():
    meta = decode_dicom(read_testdata("RG1_UNCR.dcm")).meta
    assert (meta.rows, meta.cols, meta.bits_allocated, meta.bits_stored) == (1955, 1841, 16, 15)
    assert meta.photometric == "MONOCHROME1"
    assert (meta.voi_kind, meta.window_center, meta.window_width) == ("window", 15000.0, 30000.0)
    assert meta.modality == "CR" and meta.body_part == "CHEST"
    assert meta.manufacturer.startswith("Philips")
    row = meta.as_dict()
    assert row["sop_class_uid"] == ComputedRadiographyImageStorage
    assert all(isinstance(v, str | int | float) for v in row.values())


# --------------------------------------------------------------------------------------------
# Decoding synthetic images: every branch of the pipeline


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_bit_depths_match_pydicom_reference(bits, signed):
    values = random_values(bits, signed)
    lo, hi = int(values.min()), int(values.max())
    window = ((lo + hi) / 2, (hi - lo) / 2)  # a narrow window: both clipped ends are hit
    data = make_image(values, bits, window=window)
    image = decode_dicom(data)
    assert image.meta.bits_stored == bits and image.meta.pixel_representation == int(signed)
    np.testing.assert_allclose(image.pixels, reference_display(data), atol=2e-6)
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_minmax_branch_is_the_image_range(bits):
    values = random_values(bits, signed=False)
    image = decode_dicom(make_image(values, bits))
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta.voi_kind == "minmax"
    assert image.meta.window_center == (float(values.min()) + float(values.max())) / 2
    assert image.meta.window_width == float(values.max()) - float(values.min())


def test_window_branch_differs_from_minmax_branch():
    values = random_values(12, signed=False)
    windowed = decode_dicom(make_image(values, 12, window=(1000, 500)))
    full = decode_dicom(make_image(values, 12))
    assert (windowed.meta.voi_kind, full.meta.voi_kind) == ("window", "minmax")
    assert (windowed.meta.window_center, windowed.meta.window_width) == (1000.0, 500.0)
    np.testing.assert_array_equal(windowed.pixels[values <= 750], 0.0)
    np.testing.assert_array_equal(windowed.pixels[values >= 1250], 1.0)
    assert not np.allclose(windowed.pixels, full.pixels)


def test_invalid_window_width_falls_back_to_minmax():
    values = random_values(12, signed=False)
    image = decode_dicom(make_image(values, 12, window=(1000, 0)))
    assert image.meta.voi_kind == "minmax"


@pytest.mark.parametrize("window", [None, (2048, 4096)])
def test_monochrome1_brightest_stored_value_is_black(window):
    values = random_values(12, signed=False)
    image = decode_dicom(make_image(values, 12, photometric="MONOCHROME1", window=window))
    assert image.pixels[values == values.max()].max() == 0.0
    assert image.pixels[values == values.min()].min() == pytest.approx(1.0, abs=1e-6)
    mono2 = decode_dicom(make_image(values, 12, photometric="MONOCHROME2", window=window))
    np.testing.assert_allclose(image.pixels, 1.0 - mono2.pixels, atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions_match_pydicom(function):
    values = random_values(12, signed=False)
    data = make_image(values, 12, window=(1500, 1200), voi_function=function)
    np.testing.assert_allclose(decode_dicom(data).pixels, reference_display(data), atol=2e-6)


def test_rescale_is_applied_before_the_window():
    values = random_values(12, signed=False)
    data = make_image(values, 12, rescale=(2.0, -1024.0), window=(1000.0, 3000.0))
    image = decode_dicom(data)
    np.testing.assert_allclose(image.pixels, reference_display(data), atol=2e-6)
    modality = values * 2.0 - 1024.0
    np.testing.assert_array_equal(image.pixels[modality <= -500], 0.0)


def test_modality_and_voi_lut_sequences():
    values = random_values(8, signed=False)
    modality_lut = (16, 0, [4 * v for v in range(256)])  # stored -> 0..1020
    voi_lut = (12, 0, [min(v * 4, 4095) for v in range(1021)])  # 0..1020 -> 0..4080
    data = make_image(values, 8, modality_lut=modality_lut, voi_lut=voi_lut, window=(1, 1))
    image = decode_dicom(data)
    assert image.meta.voi_kind == "lut"  # the LUT wins over the window
    np.testing.assert_allclose(image.pixels, reference_display(data), atol=1e-6)
    np.testing.assert_allclose(image.pixels, 16.0 * values / 4095, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Headers across processes


def test_header_bytes_round_trip_keeps_transfer_syntax():
    header = decode_dicom(read_testdata("RG3_J2KR.dcm")).header
    data = header_to_bytes(header)
    assert len(data) < 10_000
    restored = header_from_bytes(data)
    assert restored == header
    assert restored.file_meta.TransferSyntaxUID == JPEG2000Lossless


# --------------------------------------------------------------------------------------------
# Derived DICOM


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


def test_display_stored_inverse():
    pixels = np.linspace(0, 1, 4096, dtype=np.float32)
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        stored = display_to_stored(pixels, 12, photometric)
        assert stored.dtype == np.uint16 and stored.max() == 4095
        np.testing.assert_allclose(stored_to_display(stored, 12, photometric), pixels, atol=1e-6)
    assert display_to_stored(np.array([[-0.5, 1.5]]), 8, "MONOCHROME2").tolist() == [[0, 255]]


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


def test_deidentify_blanks_patient_identity():
    image = decode_dicom(read_testdata("RG3_UNCR.dcm"))
    out = encode_derived(image.header, image.pixels, method="m", description="d", deidentify=True)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert (ds.PatientName, ds.PatientID, ds.PatientBirthDate) == ("", "", "")
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.StudyInstanceUID == image.header.StudyInstanceUID
    assert image.header.PatientID != ""  # the source header is untouched


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
        encode_derived(image.header, image.pixels, method="histogram", description="test")
    )
    source_errors = dciodvfy_errors(dciodvfy, source_path)
    derived_errors = dciodvfy_errors(dciodvfy, derived_path)
    assert derived_errors - source_errors == set()


# --------------------------------------------------------------------------------------------
# Bad input


def build_dataset(**attributes) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def rgb_image() -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    ds.SOPInstanceUID = generate_uid()
    ds.set_pixel_data(np.zeros((8, 8, 3), np.uint8), "RGB", 8)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def multiframe_image() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(make_image(random_values(12, False), 12)))
    ds.set_pixel_data(np.zeros((2, 8, 8), np.uint16), "MONOCHROME2", 12)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make_bytes", "message"),
    [
        (lambda: os.urandom(4096), "not a DICOM file"),
        (lambda: b"", "not a DICOM file"),
        (lambda: build_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11"), "no Pixel Data"),
        (lambda: read_testdata("RG3_UNCR.dcm")[:3_000_000], "truncated"),
        (lambda: read_testdata("RG3_UNCR.dcm")[:400], "truncated"),
        (lambda: read_testdata("RG3_J2KR.dcm")[:-100], "truncated"),
        (rgb_image, "only grayscale MONOCHROME1/MONOCHROME2"),
        (multiframe_image, "only single-frame images are supported"),
    ],
    ids=[
        "random",
        "empty",
        "non-image",
        "truncated-pixels",
        "truncated-header",
        "truncated-j2k",
        "rgb",
        "multiframe",
    ],
)
def test_bad_input_raises_dicom_error(make_bytes, message):
    with pytest.raises(DicomError, match=message):
        decode_dicom(make_bytes())


def test_undecodable_transfer_syntax_names_the_plugin():
    data = read_testdata("JPEG-LL.dcm")  # JPEG lossless, process 14 SV1
    if get_decoder(pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID).is_available:
        pytest.skip("a JPEG lossless decoder plugin is installed")
    with pytest.raises(DicomError, match="install pylibjpeg-libjpeg"):
        decode_dicom(data)


def test_encode_rejects_bad_pixels_and_transfer_syntax():
    image = decode_dicom(make_image(random_values(12, False), 12))
    with pytest.raises(DicomError, match="keep the source's size"):
        encode_derived(image.header, image.pixels[:-1], method="m", description="d")
    bad = image.pixels.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DicomError, match="NaN"):
        encode_derived(image.header, bad, method="m", description="d")
    with pytest.raises(DicomError, match="cannot write transfer syntax"):
        encode_derived(
            image.header,
            image.pixels,
            method="m",
            description="d",
            transfer_syntax_uid="1.2.840.10008.1.2.4.50",  # JPEG baseline: lossy
        )


def test_jpeg2000_needs_32_pixels_per_side():
    tiny = decode_dicom(make_image(random_values(12, False, shape=(16, 64)), 12))
    tiny.header.file_meta.TransferSyntaxUID = JPEG2000Lossless  # as if the source were J2K
    out = encode_derived(tiny.header, tiny.pixels, method="m", description="d")
    assert decode_dicom(out).meta.transfer_syntax_uid == ExplicitVRLittleEndian
    with pytest.raises(DicomError, match="at least 32 pixels"):
        encode_derived(
            tiny.header,
            tiny.pixels,
            method="m",
            description="d",
            transfer_syntax_uid=JPEG2000Lossless,
        )


def test_window_to_unit_linear_hits_both_ends():
    values = np.arange(4096, dtype=np.uint16)
    unit = window_to_unit(values, center=2048, width=4096, function="LINEAR")
    np.testing.assert_allclose(unit, values / 4095, atol=1e-7)
