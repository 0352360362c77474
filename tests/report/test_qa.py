"""The report's QA section and model cards, from manifests of known rows: the run's flags and
the report's own ``ssim_outlier`` (robust z-score of the configuration's SSIMs), the list's cap,
rows written before QA flags existed, and what each model's card says (or why it says nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harmonize.report import build_report
from harmonize.report.qa import MAX_LISTED
from harmonize.run.qa import REASONS

from report_samples import histogram, make_row, section_rows, write_manifest


def _rows(ssims: list[float], flags: list[list[str] | None], model_uri: str) -> list[dict]:
    rng = np.random.default_rng(2)
    return [
        make_row(
            f"1.2.{i:03d}",
            "run-1",
            i,
            ssim=s,
            qa_flags=f,
            model_uri=model_uri,
            hist_in=histogram(rng, 0.35),
            hist_out=histogram(rng, 0.5),
            score_in=0.2,
            score_out=0.3,
        )
        for i, (s, f) in enumerate(zip(ssims, flags, strict=True))
    ]


def test_run_flags_and_ssim_outliers_are_listed_with_their_reasons(
    tmp_path: Path, model_dir: str
) -> None:
    ssims = [0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.40]  # the last: robust z about -14
    flags: list[list[str] | None] = [[], ["score_flip"], [], [], [], [], [], []]
    write_manifest(tmp_path / "run", "run-1", _rows(ssims, flags, model_dir))
    report = build_report([str(tmp_path / "run")], str(tmp_path / "report"))
    listed = section_rows(report.markdown, "QA")
    assert {cells[4]: cells[3] for cells in listed.values()} == {
        "0.810": "score_flip",
        "0.400": "ssim_outlier",
    }
    assert "QA: 2 of 8 ok images flagged; see the QA section." in report.markdown
    assert f"`ssim_outlier`: {REASONS['ssim_outlier']}" in report.markdown
    # the rows' out_uri is null: no thumbnail to draw
    assert not (tmp_path / "report" / "qa.png").exists()
    assert "the card states no intended use" in report.markdown  # model_dir's card is bare


def test_a_clean_run_says_so_and_old_rows_are_counted_as_unchecked(
    tmp_path: Path, model_dir: str
) -> None:
    ssims = [0.80, 0.81, 0.82, 0.83, 0.84, 0.85]
    flags: list[list[str] | None] = [[], [], [], None, None, []]
    write_manifest(tmp_path / "run", "run-1", _rows(ssims, flags, model_dir))
    report = build_report([str(tmp_path / "run")], str(tmp_path / "report"))
    qa = report.markdown.split("## QA", 1)[1].split("\n## ", 1)[0]
    assert "QA: 0 of 6 ok images flagged." in qa and "| # |" not in qa
    assert "2 ok rows were written before runs recorded QA flags" in qa


def test_the_list_is_capped(tmp_path: Path, model_dir: str) -> None:
    n = MAX_LISTED + 7
    flags: list[list[str] | None] = [["flat"]] * n
    write_manifest(tmp_path / "run", "run-1", _rows([0.8] * n, flags, model_dir))
    report = build_report([str(tmp_path / "run")], str(tmp_path / "report"))
    assert len(section_rows(report.markdown, "QA")) == MAX_LISTED
    assert "… and 7 more flagged images." in report.markdown


@pytest.mark.timeout(60)
def test_the_models_section_shows_each_cards_sites_and_failure_modes(
    tmp_path: Path, histogram_model: str
) -> None:
    rows = _rows([0.8] * 3, [[]] * 3, histogram_model)
    other = _rows([0.8] * 2, [[]] * 2, str(tmp_path / "gone"))
    for row in other:
        row.update(method="nyul", config_hash="cfg-b", image_id=row["image_id"] + "9")
    write_manifest(tmp_path / "run", "run-1", rows + other)
    report = build_report([str(tmp_path / "run")], str(tmp_path / "report"))
    models = report.markdown.split("## Models", 1)[1].split("\n## ", 1)[0]
    assert f"**histogram** (`{histogram_model}`): source site any" in models
    assert "target site shenzhen-like; trained on target 8 images" in models
    assert "validation: 8 target (in-domain) images; SSIM 0." in models
    assert "one global intensity map per image" in models
    assert f"**nyul** (`{tmp_path / 'gone'}`): no readable model card" in models
