"""Runs against paired truth: with a labels table that links each source image to the same
patient imaged at the target site, every row gets SSIM and PSNR of the harmonized image against
it (equal to scikit-image's), on the local executor and on the Ray Data stream alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harmonize.dicom.decode import decode_dicom
from harmonize.distributed.stream import RayStreamExecutor
from harmonize.io.manifest import read_manifest
from harmonize.methods.fit import fit_classical
from harmonize.report import build_report
from harmonize.run.local import LocalExecutor
from harmonize.synth import synthesize_archive

from conftest import SOURCE, TARGET, run_archive


@pytest.fixture(scope="module")
def truth_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("truth-archive")
    synthesize_archive(
        str(root), [TARGET, SOURCE], 4, seed=9, matrix=96, progress=False, truth_site=TARGET
    )
    model = str(root / "model")
    fit_classical("histogram", str(root / TARGET), model, progress=False)
    return root, model


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_rows_get_ssim_and_psnr_against_their_truth(
    ray_session: object, truth_archive: tuple[Path, str], tmp_path: Path, executor: str
) -> None:
    root, model = truth_archive
    stream = LocalExecutor() if executor == "local" else RayStreamExecutor(batch_size=2)
    summary = run_archive(root, model, tmp_path, stream)
    assert summary.counts["ok"] == 4
    rows = read_manifest(str(tmp_path)).to_pandas()
    labels = pd.read_parquet(root / "labels.parquet").set_index("image_id")
    for row in rows.itertuples():
        assert row.truth_uri == str(root / labels.loc[row.image_id, "truth_path"])
        truth = decode_dicom((root / labels.loc[row.image_id, "truth_path"]).read_bytes()).pixels
        harmonized = decode_dicom(Path(row.out_uri).read_bytes()).pixels
        options = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
        expected = structural_similarity(truth, harmonized, data_range=1.0, **options)
        # The derived DICOM is quantised: compare at its precision.
        assert row.ssim_truth == pytest.approx(expected, abs=2e-3)
        assert row.psnr_truth == pytest.approx(
            peak_signal_noise_ratio(truth, harmonized, data_range=1.0), abs=0.1
        )
    assert pydicom.dcmread(rows.out_uri[0]).Rows == 96


def test_without_a_truth_the_columns_stay_empty(
    truth_archive: tuple[Path, str], tmp_path: Path
) -> None:
    root, model = truth_archive
    run_archive(root, model, tmp_path, input_uri=str(root / TARGET))  # target rows: own truth
    rows = read_manifest(str(tmp_path)).to_pandas()
    assert len(rows) == 4 and rows.truth_uri.isna().all() and rows.ssim_truth.isna().all()
    assert np.isfinite(rows.ssim).all()


def test_the_report_gives_ssim_and_psnr_against_the_truth(
    truth_archive: tuple[Path, str], tmp_path: Path
) -> None:
    root, model = truth_archive
    run_archive(root, model, tmp_path / "run")
    rows = read_manifest(str(tmp_path / "run")).to_pandas()
    report = build_report([str(tmp_path / "run")], str(tmp_path / "report"))
    header = next(line for line in report.markdown.splitlines() if "SSIM vs truth" in line)
    assert "PSNR vs truth (dB)" in header
    ssim, psnr = rows.ssim_truth, rows.psnr_truth
    row = next(line for line in report.markdown.splitlines() if line.startswith("| histogram"))
    assert f"{ssim.mean():.4f} ± {ssim.std(ddof=0):.4f}" in row
    assert f"{psnr.mean():.2f} ± {psnr.std(ddof=0):.2f}" in row
    plain = build_report([str(tmp_path / "run")], str(tmp_path / "r2"), target_site=SOURCE)
    assert "SSIM vs truth" not in plain.markdown  # no counted row has a truth
