"""The compressed syntaxes of real CR/DX archives decode with permissively licensed codecs: JPEG
lossless (process 14 and SV1), baseline and 12-bit extended through harmonize's imagecodecs
plugin, JPEG-LS through pyjpegls; lossless decodes are pixel-identical to the uncompressed
image, lossy ones close to it; and no GPL decoder is installed."""

from __future__ import annotations

import io
from importlib.metadata import PackageNotFoundError, metadata

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from harmonize.dicom.decode import decode_dicom

from dicom_samples import make_image, random_values, read_testdata


def _smooth(bits: int) -> np.ndarray:
    """A radiograph-like image (smooth, with noise) of ``bits`` stored bits."""
    y, x = np.mgrid[0:96, 0:128]
    base = 0.5 + 0.3 * np.sin(x / 17.0) * np.cos(y / 11.0)
    noise = random_values(bits, False, shape=(96, 128), seed=1) / (2**bits) * 0.05
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.clip((base + noise) * (2**bits - 1), 0, 2**bits - 1).astype(dtype)


def _compressed(values: np.ndarray, bits: int, syntax: str, frame: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(make_image(values, bits)))
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("syntax", "bits", "options", "tolerance"),
    [
        (JPEGLosslessSV1, 12, {"lossless": True, "predictor": 1}, 0.0),
        (JPEGLosslessSV1, 16, {"lossless": True, "predictor": 1}, 0.0),
        (JPEGLossless, 12, {"lossless": True, "predictor": 6}, 0.0),
        (JPEGBaseline8Bit, 8, {"level": 95}, 0.01),
        (JPEGExtended12Bit, 12, {"level": 95}, 0.01),
    ],
    ids=["lossless-sv1-12bit", "lossless-sv1-16bit", "lossless-p6-12bit", "baseline", "extended"],
)
def test_jpeg_decodes_like_the_uncompressed_image(syntax, bits, options, tolerance) -> None:
    values = _smooth(bits)
    frame = imagecodecs.jpeg8_encode(values, bitspersample=bits, **options)
    data = _compressed(values, bits, syntax, frame)
    decoded = decode_dicom(data)
    assert decoded.meta.transfer_syntax_uid == syntax
    if tolerance == 0.0:
        np.testing.assert_array_equal(decoded.pixels, decode_dicom(make_image(values, bits)).pixels)
    else:  # lossy: the stored values (the display window follows their min and max)
        stored = pydicom.dcmread(io.BytesIO(data)).pixel_array.astype(np.float64)
        error = np.abs(stored - values) / (2**bits - 1)
        assert error.mean() < tolerance and np.corrcoef(stored.ravel(), values.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEGLSNearLossless])
def test_jpeg_ls_decodes_through_pyjpegls(syntax) -> None:
    values = _smooth(12)
    ds = pydicom.dcmread(io.BytesIO(make_image(values, 12)))
    error = 0 if syntax == JPEGLSLossless else 2
    ds.compress(syntax, encoding_plugin="pyjpegls", **({"jls_error": error} if error else {}))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image = decode_dicom(buffer.getvalue())
    assert image.meta.transfer_syntax_uid == syntax
    stored = pydicom.dcmread(io.BytesIO(buffer.getvalue())).pixel_array.astype(int)
    assert np.abs(stored - values).max() <= error  # the codec's own bound, exact when lossless


@pytest.mark.parametrize(
    "name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEG-lossy.dcm", "JPGExtended.dcm"]
)
def test_real_jpeg_files_of_pydicom_data_decode(name) -> None:
    image = decode_dicom(read_testdata(name))
    assert image.pixels.ndim == 2 and 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0


def test_the_decoders_are_permissive_and_the_gpl_one_is_absent() -> None:
    with pytest.raises(PackageNotFoundError):
        metadata("pylibjpeg-libjpeg")  # GPL-3.0: never in the default install
    for package in ("imagecodecs", "pyjpegls", "pylibjpeg-openjpeg", "pylibjpeg-rle"):
        meta = metadata(package)
        text = " ".join(
            [meta.get("License") or "", meta.get("License-Expression") or ""]
            + [c for c in meta.get_all("Classifier") or [] if "License" in c]
        )
        assert "GPL" not in text and ("BSD" in text or "MIT" in text), (package, text)
