"""Synthetic archives: one file per image, labels, determinism, DICOM validity, site shift."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from scipy.stats import wasserstein_distance

from harmonize.errors import ConfigError
from harmonize.io.labels import COLUMNS
from harmonize.synth import (
    PROFILES,
    load_profile,
    lung_mask,
    profile_to_dict,
    read_labels,
    synthesize_archive,
    synthesize_image,
)

from conftest import REAL_PNG_DIR, display, read_archive

REAL_PNGS = REAL_PNG_DIR
MATRIX = 256


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
    dsp = [display(pydicom.dcmread(io.BytesIO(im.dicom))) for im in images]
    lungs = lung_mask(images[0].patient, MATRIX) > 0.9
    assert dsp[1][lungs].mean() - dsp[0][lungs].mean() > 0.15  # darker lungs on shenzhen-like


def test_bad_archive_arguments_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a built-in"):
        load_profile("no-such-site")
    with pytest.raises(ConfigError, match="n_per_site"):
        synthesize_archive(str(tmp_path), ["mc-like"], 0, progress=False)
    with pytest.raises(ConfigError, match="unique"):
        synthesize_archive(str(tmp_path), ["mc-like", "mc-like"], 1, progress=False)
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+: profile .* bits_stored must be"):
        load_profile(str(_bad_yaml(tmp_path)))


def _bad_yaml(tmp_path: Path) -> Path:
    raw = profile_to_dict(PROFILES["mc-like"]) | {"bits_stored": 13}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
