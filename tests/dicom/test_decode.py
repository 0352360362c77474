"""Tests for harmonize.dicom.decode: real and synthetic images against pydicom; bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
from bad_inputs import (
    altered,
    build_dataset,
    corrupt_length,
    mixed_batch,
    multiframe_image,
    part2_image,
    rgb_image,
)
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
)

from harmonize.dicom.decode import DecodedImage, decode_dicom, decode_dicom_batch
from harmonize.errors import DicomError

from dicom_samples import (
    data_path,
    make_image,
    random_values,
    read_testdata,
    reference_display,
    same_message,
)

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
# Decoding synthetic images of every supported bit depth


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


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("make_bytes", "message"),
    [
        (lambda: os.urandom(4096), "not a DICOM file"),
        (lambda: b"", "not a DICOM file"),
        (
            lambda: build_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11"),
            "the object is a Basic Text SR Storage object, not an image",
        ),
        (
            lambda: build_dataset(SOPClassUID="1.2.840.10008.5.1.4.1.1.11.1"),
            "the object is a presentation state",
        ),
        (lambda: data_path("DICOMDIR").read_bytes(), "the object is a DICOMDIR"),
        (lambda: altered(Rows=16000, Columns=16000), r"16000x16000 pixels \(256 megapixels\)"),
        (lambda: altered(Rows=30), "Pixel Data holds 3168 bytes, more than the 2640"),
        (lambda: altered(Rows=40), "Pixel Data holds 3168 bytes, but .* need 3520"),
        (lambda: altered(TransferSyntaxUID="1.2.3.4.5"), "'1.2.3.4.5' is not one that DICOM"),
        (corrupt_length, "the header is corrupt: the file holds Pixel Data"),
        (lambda: read_testdata("RG3_UNCR.dcm")[:3_000_000], "truncated"),
        (lambda: read_testdata("RG3_UNCR.dcm")[:400], "truncated"),
        (lambda: read_testdata("RG3_J2KR.dcm")[:-100], "truncated"),
        (rgb_image, "only grayscale MONOCHROME1/MONOCHROME2"),
        (multiframe_image, "only single-frame images are supported"),
    ],
    ids=[
        "random",
        "empty",
        "structured-report",
        "presentation-state",
        "dicomdir",
        "16000-squared",
        "pixel-data-too-long",
        "pixel-data-too-short",
        "unknown-transfer-syntax",
        "corrupt-element-length",
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


def test_the_pixel_limit_is_checked_before_decoding() -> None:
    data = make_image(random_values(12, False), 12)  # 36 x 44 = 1584 pixels
    assert decode_dicom(data, max_pixels=1584).pixels.shape == (36, 44)
    with pytest.raises(DicomError, match="more than the limit"):
        decode_dicom(data, max_pixels=1583)


def test_a_syntax_no_decoder_handles_says_to_convert_the_file():
    with pytest.raises(DicomError, match="pydicom has no decoder for it; convert the file"):
        decode_dicom(part2_image())


# --------------------------------------------------------------------------------------------
# A batch


def test_a_batch_decodes_each_object_as_decode_dicom_does_and_keeps_errors_to_their_own():
    batch = mixed_batch()
    entries = decode_dicom_batch(list(batch.values()))
    assert len(entries) == len(batch)
    failed = []
    for (name, data), entry in zip(batch.items(), entries, strict=True):
        try:
            alone = decode_dicom(data)
        except DicomError as err:
            assert isinstance(entry, DicomError) and same_message(entry, err), name
            failed.append(name)
            continue
        assert isinstance(entry, DecodedImage), name
        np.testing.assert_array_equal(entry.pixels, alone.pixels)
        assert (entry.meta, entry.decoder) == (alone.meta, alone.decoder)
    assert failed == ["corrupt-j2k", "truncated", "report"]
    assert decode_dicom_batch([]) == []
