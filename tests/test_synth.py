"""Tests of harmonize.synth: archives, determinism, DICOM validity, site shift, lesions."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from scipy.stats import wasserstein_distance

from harmonize.errors import ConfigError
from harmonize.io.labels import COLUMNS
from harmonize.io.storage import Storage
from harmonize.synth import (
    PROFILES,
    load_profile,
    lung_mask,
    profile_from_dict,
    profile_from_yaml,
    profile_to_dict,
    profile_to_yaml,
    read_labels,
    render_attenuation,
    sample_patient,
    synthesize_archive,
    synthesize_image,
    wrap_pngs,
)

from conftest import REAL_PNG_DIR

REAL_PNGS = REAL_PNG_DIR
MATRIX = 256


def display(ds: pydicom.Dataset) -> np.ndarray:
    """Display image in [0, 1] (white = attenuating): modality LUT, VOI LUT, MONOCHROME1 flip."""

    def chain(stored: np.ndarray) -> np.ndarray:
        return np.asarray(apply_voi_lut(apply_modality_lut(stored, ds), ds), dtype=np.float64)

    lo, hi = chain(np.array([0, 2**ds.BitsStored - 1], dtype=np.uint16))
    out = (chain(ds.pixel_array) - lo) / (hi - lo)
    return 1.0 - out if ds.PhotometricInterpretation == "MONOCHROME1" else out


def read_archive(root: Path) -> tuple[pd.DataFrame, dict[str, bytes]]:
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.dcm")}
    return read_labels(str(root)), files


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    synthesize_archive(
        str(root), ["shenzhen-like", "mc-like"], 6, seed=7, matrix=MATRIX, progress=False
    )
    return root


def test_archive_has_one_file_per_image_and_a_matching_labels_table(two_sites: Path) -> None:
    table, files = read_archive(two_sites)
    assert len(files) == 2 * 6
    assert list(table.columns) == COLUMNS
    assert len(table) == 12
    assert table.groupby("site").size().to_dict() == {"mc-like": 6, "shenzhen-like": 6}
    assert sorted(table["path"]) == sorted(files)
    csv = pd.read_csv(two_sites / "labels.csv")
    assert csv["image_id"].tolist() == table["image_id"].tolist()
    assert csv["label"].tolist() == table["label"].tolist()
    for row in table.itertuples():
        ds = pydicom.dcmread(two_sites / row.path, stop_before_pixels=True)
        assert row.path == f"{row.site}/{ds.SOPInstanceUID}.dcm"
        assert row.image_id == ds.SOPInstanceUID
        assert ds.Manufacturer == PROFILES[row.site].vendor.manufacturer
        assert ds.Rows == ds.Columns == MATRIX
    assert len(set(table["image_id"])) == 12


def test_same_label_prevalence_on_every_site(two_sites: Path) -> None:
    table = read_labels(str(two_sites))
    assert table.groupby("site")["label"].sum().to_dict() == {"mc-like": 3, "shenzhen-like": 3}


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> tuple[pd.DataFrame, dict[str, bytes]]:
        synthesize_archive(
            str(tmp_path / name),
            ["shenzhen-like", "mc-like"],
            2,
            seed=seed,
            matrix=128,
            progress=False,
        )
        return read_archive(tmp_path / name)

    table_a, files_a = run("a", 1)
    table_b, files_b = run("b", 1)
    table_c, files_c = run("c", 2)
    assert files_a == files_b  # byte-identical: pixels, UIDs, names and dates
    pd.testing.assert_frame_equal(table_a, table_b)
    assert not set(table_a["image_id"]) & set(table_c["image_id"])
    pixels = [pydicom.dcmread(tmp_path / "a" / p).pixel_array for p in sorted(files_a)]
    others = [pydicom.dcmread(tmp_path / "c" / p).pixel_array for p in table_c["path"]]
    assert all(not np.array_equal(p, q) for p in pixels for q in others)


def test_sites_get_independent_patients_unless_paired() -> None:
    sz, mc = PROFILES["shenzhen-like"], PROFILES["mc-like"]
    unpaired = [synthesize_image(p, 0, 0, 1, matrix=128) for p in (sz, mc)]
    assert unpaired[0].patient != unpaired[1].patient
    paired = [synthesize_image(p, 0, 0, 1, matrix=128, paired=True) for p in (sz, mc)]
    assert paired[0].patient == paired[1].patient
    assert paired[0].identity.sop_uid != paired[1].identity.sop_uid


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_builtin_profile_writes_valid_dicom(name: str, tmp_path: Path, dciodvfy: str) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(synthesize_image(PROFILES[name], 3, 0, 1, matrix=MATRIX).dicom)
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    report = result.stdout + result.stderr
    assert "CRImage" in report
    assert [line for line in report.splitlines() if line.startswith("Error")] == []
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == PROFILES[name].transfer_syntax
    assert ds.BitsStored == PROFILES[name].bits_stored
    assert ds.pixel_array.max() <= PROFILES[name].max_stored


def test_site_intensity_distributions_differ(two_sites: Path) -> None:
    table = read_labels(str(two_sites))
    pooled = {
        site: np.concatenate(
            [display(pydicom.dcmread(two_sites / p)).ravel() for p in group["path"]]
        )
        for site, group in table.groupby("site")
    }
    sz, mc = pooled["shenzhen-like"], pooled["mc-like"]
    assert mc.mean() - sz.mean() > 0.1  # the Montgomery-like site is brighter
    assert wasserstein_distance(sz[::7], mc[::7]) > 0.1
    # Same patients (paired) through the two chains: the shift is the acquisition alone.
    images = [
        synthesize_image(PROFILES[s], 5, 0, 0, matrix=MATRIX, paired=True)
        for s in ("shenzhen-like", "mc-like")
    ]
    dsp = [display(pydicom.dcmread(_bytes_io(im.dicom))) for im in images]
    lungs = lung_mask(images[0].patient, MATRIX) > 0.9
    assert dsp[1][lungs].mean() - dsp[0][lungs].mean() > 0.15  # darker lungs on shenzhen-like


def _bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


@pytest.mark.parametrize("name", ["shenzhen-like", "mc-like"])
def test_display_looks_like_a_chest_radiograph(name: str) -> None:
    image = synthesize_image(PROFILES[name], 11, 0, 0, matrix=MATRIX)
    shown = display(pydicom.dcmread(_bytes_io(image.dicom)))
    lungs = lung_mask(image.patient, MATRIX) > 0.9
    centre = MATRIX // 2
    spine = shown[int(0.3 * MATRIX) : int(0.5 * MATRIX), centre - 3 : centre + 3]
    assert lungs.mean() > 0.15
    assert shown[lungs].mean() + 0.1 < spine.mean()  # dark lungs, bright mediastinum and spine


def test_findings_change_only_the_lungs() -> None:
    for seed in range(4):
        normal = sample_patient(np.random.default_rng(seed), 0)
        sick = sample_patient(np.random.default_rng(seed), 1)
        assert normal.label == 0 and sick.label == 1
        assert dataclasses.replace(sick, findings=()) == normal  # same anatomy
        diff = render_attenuation(sick, MATRIX) - render_attenuation(normal, MATRIX)
        lungs = lung_mask(normal, MATRIX)
        assert np.abs(diff[lungs == 0]).max() == 0  # findings stay inside the lung fields
        assert np.abs(diff[lungs > 0.5]).max() > 0.2  # visible: > 20 % change in transmission
        hidden = sample_patient(np.random.default_rng(seed), 1, lesion_strength=0.0)
        np.testing.assert_array_equal(
            render_attenuation(hidden, 64), render_attenuation(normal, 64)
        )


def test_lesion_images_differ_from_normal_in_the_lung_after_acquisition() -> None:
    profile = PROFILES["shenzhen-like"]
    gaps = []
    for index in range(4):
        sick = synthesize_image(profile, 9, index, 1, matrix=MATRIX, paired=True)
        well = synthesize_image(profile, 9, index, 0, matrix=MATRIX, paired=True)
        lungs = lung_mask(well.patient, MATRIX) > 0.5
        delta = np.abs(sick.pixels.astype(float) - well.pixels.astype(float))
        gaps.append(np.percentile(delta[lungs], 99.5) - np.percentile(delta[~lungs], 99.5))
    assert min(gaps) > 0.02 * profile.max_stored


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_yaml_round_trip(name: str, tmp_path: Path) -> None:
    profile = PROFILES[name]
    assert profile_from_yaml(profile_to_yaml(profile)) == profile
    path = tmp_path / "site.yaml"
    path.write_text(profile_to_yaml(dataclasses.replace(profile, name="custom")))
    assert load_profile(str(path)) == dataclasses.replace(profile, name="custom")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bits_stored": 11}, "bits_stored is 11"),
        ({"photometric": "RGB"}, "photometric is 'RGB'"),
        ({"transfer_syntax": "jpeg-lossy"}, "transfer_syntax is 'jpeg-lossy'"),
        ({"response": {"kind": "cubic"}}, "response kind is 'cubic'"),
        ({"response": {"kind": "gamma", "gamma": -1}}, "gamma is -1"),
        ({"response": {"kind": "log", "low": 3, "high": 1}}, "high (1) must be greater"),
        ({"window": {"center": 100, "width": 0}}, "window.width is 0"),
        ({"noise": {"photons_per_pixel": "many"}}, "photons_per_pixel is 'many'"),
        ({"matrix": 10}, "matrix is 10"),
        ({"colour": "blue"}, "unknown key(s) ['colour']"),
    ],
)
def test_bad_profile_value_raises_config_error(change: dict, message: str) -> None:
    raw = {**profile_to_dict(PROFILES["shenzhen-like"]), **change}
    with pytest.raises(ConfigError) as err:
        profile_from_dict(raw)
    assert message in str(err.value)


def test_bad_archive_arguments_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a built-in"):
        load_profile("no-such-site")
    with pytest.raises(ConfigError, match="n_per_site"):
        synthesize_archive(str(tmp_path), ["mc-like"], 0, progress=False)
    with pytest.raises(ConfigError, match="unique"):
        synthesize_archive(str(tmp_path), ["mc-like", "mc-like"], 1, progress=False)
    with pytest.raises(ConfigError, match="bits_stored"):
        load_profile(str(_bad_yaml(tmp_path)))


def _bad_yaml(tmp_path: Path) -> Path:
    raw = profile_to_dict(PROFILES["mc-like"]) | {"bits_stored": 13}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_wrap_pngs_keeps_pixels_and_builds_a_two_site_archive(tmp_path: Path) -> None:
    out = str(tmp_path)
    first = wrap_pngs(str(REAL_PNGS / "mc"), out, "mc-like", progress=False)
    second = wrap_pngs(str(REAL_PNGS / "tbx11k"), out, "shenzhen-like", progress=False)
    table = read_labels(out)
    assert len(first) == 2 and len(second) == 3 and len(table) == 5
    assert table.groupby("site").size().to_dict() == {"mc-like": 2, "shenzhen-like": 3}
    truth = pd.read_csv(REAL_PNGS / "labels.csv").set_index("file")["label"]
    for folder, rows in (("mc", first), ("tbx11k", second)):
        for row in rows.itertuples():
            ds = pydicom.dcmread(tmp_path / row.path)
            profile = PROFILES[row.site]
            png = np.asarray(Image.open(REAL_PNGS / folder / row.source), dtype=np.int64)
            stored = ds.pixel_array.astype(np.int64)
            if ds.PhotometricInterpretation == "MONOCHROME1":
                stored = profile.max_stored - stored
            np.testing.assert_array_equal(stored, (png * profile.max_stored + 127) // 255)
            assert row.label == truth[f"{folder}/{row.source}"]
            assert row.image_id in set(table["image_id"])
    # Wrapping again is idempotent (same UIDs); a matrix override resamples.
    wrap_pngs(str(REAL_PNGS / "mc"), out, "mc-like", progress=False)
    assert len(read_labels(out)) == 5
    resized = wrap_pngs(
        str(REAL_PNGS / "mc"), str(tmp_path / "r"), "mc-like", matrix=200, progress=False
    )
    assert pydicom.dcmread(tmp_path / "r" / resized["path"][0]).Rows == 200


def test_wrap_pngs_without_labels_gives_null_labels(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray((np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)).save(
        folder / "a.png"
    )
    table = wrap_pngs(str(folder), str(tmp_path / "out"), "portable-like", progress=False)
    assert table["label"].isna().all()
    ds = pydicom.dcmread(tmp_path / "out" / table["path"][0])
    expected = (np.arange(64 * 64).reshape(64, 64) % 256 * 1023 + 127) // 255
    np.testing.assert_array_equal(ds.pixel_array, expected)


@pytest.mark.slow
def test_archive_and_wrapped_pngs_on_s3(s3_server: Any, tmp_path: Path) -> None:
    store = Storage(endpoint_url=s3_server.endpoint_url)
    out = f"{s3_server.create_bucket('synth-test')}/archive"
    synthesize_archive(out, ["mc-like"], 2, seed=1, storage=store, matrix=96, progress=False)
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(folder / "a.png")
    wrap_pngs(str(folder), out, "shenzhen-like", storage=store, progress=False)
    table = read_labels(out, store)
    assert table.groupby("site").size().to_dict() == {"mc-like": 2, "shenzhen-like": 1}
    listed = [o.uri for o in store.list(out, suffixes=(".dcm",))]
    assert sorted(listed) == sorted(f"{out}/{p}" for p in table["path"])
    ds = pydicom.dcmread(io.BytesIO(store.read(f"{out}/{table['path'].iloc[-1]}")))
    assert int(ds.pixel_array.max()) == (200 * 4095 + 127) // 255
