"""Paired truth: each source image's patient imaged again at the truth site, pixel-aligned, with
the same anatomy, findings and dose, stored beside the archive and linked in the labels table."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pydicom

from harmonize.synth import PROFILES, read_labels, synthesize_archive, synthesize_image
from harmonize.synth.profiles import Noise

from conftest import SOURCE, TARGET, run_cli


def _noiseless(name: str) -> object:
    profile = PROFILES[name]
    return dataclasses.replace(profile, noise=Noise(photons_per_pixel=1e12, electronic_sigma=0.0))


def test_the_truth_is_the_same_patient_pixel_aligned_and_reproducible() -> None:
    source, target = PROFILES[SOURCE], PROFILES[TARGET]
    image = synthesize_image(source, 5, 2, 1, matrix=128, truth=target)
    truth = image.truth
    assert truth is not None and truth.patient == image.patient  # same anatomy and findings
    assert truth.pixels.shape == image.pixels.shape == (128, 128)
    assert truth.identity.sop_uid != image.identity.sop_uid
    again = synthesize_image(source, 5, 2, 1, matrix=128, truth=target).truth
    assert again is not None and again.dicom == truth.dicom  # a re-render: correlation 1
    ds = pydicom.dcmread(io.BytesIO(truth.dicom))
    assert ds.BitsStored == target.bits_stored and ds.PatientID == image.identity.patient_id
    # Without noise, imaging the patient "at" a copy of its own site gives its very pixels:
    # the truth is the same exposure of the same attenuation, aligned pixel for pixel.
    quiet = _noiseless(SOURCE)
    twin = dataclasses.replace(quiet, name="twin")
    pair = synthesize_image(quiet, 5, 2, 1, matrix=128, truth=twin)
    assert pair.truth is not None
    difference = pair.truth.pixels.astype(np.int64) - pair.pixels
    assert np.abs(difference).max() <= 1 and (difference == 0).mean() > 0.99  # noise: 1e-6


def test_synth_writes_the_truth_beside_the_archive_and_links_it(tmp_path: Path) -> None:
    code = run_cli(
        "synth", str(tmp_path), "--site", TARGET, "--site", SOURCE, "--n-per-site", "3",
        "--matrix", "96", "--truth-site", TARGET, "--no-progress",
    )  # fmt: skip
    assert code == 0
    table = read_labels(str(tmp_path))
    target_rows, source_rows = table[table.site == TARGET], table[table.site == SOURCE]
    assert (target_rows.truth_path == target_rows.path).all()  # a target image is its own truth
    assert source_rows.truth_path.str.startswith(f"truth/{TARGET}/").all()
    truths = sorted((tmp_path / "truth" / TARGET).iterdir())
    assert len(truths) == 3 == source_rows.truth_path.nunique()
    for row in source_rows.itertuples():
        original = pydicom.dcmread(tmp_path / row.path)
        truth = pydicom.dcmread(tmp_path / row.truth_path)
        assert truth.pixel_array.shape == original.pixel_array.shape
        assert truth.Manufacturer == PROFILES[TARGET].vendor.manufacturer
    unpaired = synthesize_archive(str(tmp_path / "plain"), [SOURCE], 2, matrix=64, progress=False)
    assert unpaired.truth_path.isna().all()
