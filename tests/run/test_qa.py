"""QA flags: each flag on synthetic images and rows (exact expectations), then a real run over
the session archive with planted failures (an image the harmonizer inverts, one clipped to a
constant, one whose classifier score flips): exactly those rows are flagged, with the expected
codes, and the report lists exactly them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmonize.dicom.decode import decode_dicom
from harmonize.io.archive import list_images
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage
from harmonize.methods.base import Harmonizer
from harmonize.metrics.histogram import HIST_BINS
from harmonize.models.registry import load_model
from harmonize.run.local import LocalExecutor
from harmonize.run.qa import (
    REASONS,
    QaThresholds,
    pixel_flags,
    qa_flags,
    robust_z,
    ssim_outliers,
)
from harmonize.run.spec import RunSpec
from harmonize.run.stages import mark_failed

from conftest import SOURCE, run_archive

rng = np.random.default_rng(5)
IMAGE = np.clip(
    np.linspace(0.1, 0.9, 64 * 64, dtype=np.float32).reshape(64, 64)
    + rng.normal(0, 0.02, (64, 64)).astype(np.float32),
    0.0,
    1.0,
)


# -- each flag on its own ------------------------------------------------------------------------
def test_a_gentle_monotone_change_is_clean() -> None:
    assert qa_flags(IMAGE, IMAGE**1.2, ssim=0.9, score_in=0.3, score_out=0.4) == []


def test_an_inverted_image_is_flagged_by_correlation_or_negative_ssim() -> None:
    assert pixel_flags(IMAGE, 1.0 - IMAGE) == ["inverted"]
    # anti-correlated pixels are enough; a negative SSIM alone is enough too
    assert qa_flags(IMAGE, IMAGE, ssim=-0.01) == ["inverted", "low_ssim"]


def test_a_collapsed_range_is_flat_and_a_constant_is_not_inverted() -> None:
    squeezed = 0.5 + 0.2 * (IMAGE - 0.5)  # p1..p99 range: 20 % of the input's
    assert pixel_flags(IMAGE, squeezed) == ["flat"]
    assert pixel_flags(IMAGE, 0.5 + 0.3 * (IMAGE - 0.5)) == []  # 30 %: kept
    assert pixel_flags(IMAGE, np.full_like(IMAGE, 0.4)) == ["flat"]


def test_clipping_counts_only_pixels_the_input_did_not_have_at_the_ends() -> None:
    stretched = np.clip((IMAGE - 0.5) * 3 + 0.5, 0, 1)  # ~2/3 of the pixels at 0 or 1
    assert pixel_flags(IMAGE, stretched) == ["clipped"]
    assert pixel_flags(stretched, stretched) == []  # already clipped before: not the harmonizer
    assert pixel_flags(IMAGE, np.zeros_like(IMAGE)) == ["flat", "clipped"]


def test_score_flip_needs_a_crossing_and_a_large_move() -> None:
    assert qa_flags(IMAGE, IMAGE, score_in=0.2, score_out=0.75) == ["score_flip"]
    assert qa_flags(IMAGE, IMAGE, score_in=0.9, score_out=0.3) == ["score_flip"]
    assert qa_flags(IMAGE, IMAGE, score_in=0.3, score_out=0.7) == []  # moved 0.4
    assert qa_flags(IMAGE, IMAGE, score_in=0.55, score_out=0.99) == []  # no crossing
    assert qa_flags(IMAGE, IMAGE, score_in=None, score_out=0.99) == []
    limits = QaThresholds(score_move=0.3)
    assert qa_flags(IMAGE, IMAGE, score_in=0.3, score_out=0.7, limits=limits) == ["score_flip"]


def test_hist_away_compares_w1_to_the_target_before_and_after() -> None:
    def hist(*bins: int) -> list[float]:  # equal mass in each of ``bins`` (W1: bin width 1/64)
        out = np.zeros(HIST_BINS)
        out[list(bins)] = 1.0 / len(bins)
        return out.tolist()

    target, before = hist(32), hist(19)  # 13 bins from the target
    away, toward, within_margin = hist(51), hist(38), hist(18, 19)  # 19, 6 and 13.5 bins
    for after, expected in ((away, ["hist_away"]), (toward, []), (within_margin, [])):
        flags = qa_flags(IMAGE, IMAGE, hist_in=before, hist_out=after, target_histogram=target)
        assert flags == expected
    assert qa_flags(IMAGE, IMAGE, hist_in=before, hist_out=away) == []  # no target: no flag


def test_low_ssim_is_an_absolute_floor() -> None:
    assert qa_flags(IMAGE, IMAGE, ssim=0.29) == ["low_ssim"]
    assert qa_flags(IMAGE, IMAGE, ssim=0.31) == []
    assert qa_flags(IMAGE, IMAGE, ssim=float("nan")) == []


def test_robust_z_and_ssim_outliers() -> None:
    values = np.array([0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.30])
    z = robust_z(values)
    median, mad = 0.825, 1.4826 * 0.02
    np.testing.assert_allclose(z, (values - median) / mad)
    assert ssim_outliers(values).tolist() == [False] * 7 + [True]
    assert not ssim_outliers(values[[0, 1, 2, 7]]).any()  # too few for a distribution
    assert not ssim_outliers(np.full(8, 0.8)).any()  # no spread: nothing stands out
    with_nan = np.append(values, np.nan)
    assert ssim_outliers(with_nan).tolist() == [False] * 7 + [True, False]


def test_every_code_has_a_reason() -> None:
    assert set(REASONS) >= {"inverted", "flat", "clipped", "score_flip", "hist_away", "low_ssim"}
    assert all(REASONS[code].strip() for code in REASONS)


def test_an_error_row_has_no_qa_flags() -> None:
    row = {"status": "ok", "qa_flags": ["flat"]}
    mark_failed(row, "encode", ValueError("broken"))
    assert row["status"] == "error" and row["qa_flags"] is None


# -- a real run with planted failures --------------------------------------------------------------
def _digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.float32).tobytes()).hexdigest()


CORNER = 16  # the stub classifier reads the top-left CORNER x CORNER pixels


class PlantedHarmonizer(Harmonizer):
    """Histogram matching, except for three images (recognised by their pixels): one inverted,
    one clipped to a constant, one with a bright corner the stub classifier reads as a finding."""

    method = "histogram"

    def __init__(self, inner: Harmonizer, plants: dict[str, str]) -> None:
        self.inner, self.plants = inner, plants
        self.target_histogram = inner.target_histogram

    def transform(self, image: np.ndarray) -> np.ndarray:
        out = self.inner.transform(image)
        plant = self.plants.get(_digest(image))
        if plant == "invert":
            return 1.0 - out
        if plant == "constant":
            return np.full_like(out, 0.5)
        if plant == "corner":
            out = out.copy()
            out[:CORNER, :CORNER] = 1.0
        return out


class CornerScorer:
    """A deterministic classifier: 0.9 when the top-left corner is white, else 0.1."""

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([0.9 if im[:CORNER, :CORNER].mean() > 0.95 else 0.1 for im in images])


class PlantedExecutor(LocalExecutor):
    """The local executor with the planted harmonizer and the stub classifier instead of the
    ones the spec names."""

    def __init__(self, harmonizer: Harmonizer) -> None:
        super().__init__()
        self.harmonizer = harmonizer

    def load(self, spec: RunSpec, storage: Storage) -> tuple[Harmonizer, CornerScorer]:
        return self.harmonizer, CornerScorer()


@pytest.fixture(scope="module")
def planted_run(
    archive: Path, histogram_model: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """A run of the source site with three planted failures; returns its output and the
    planted source URI -> what was done to it."""
    storage = Storage()
    uris = [o.uri for o in list_images(str(archive / SOURCE), storage)]
    chosen = dict(zip(("invert", "constant", "corner"), uris[1:4], strict=True))
    plants = {_digest(decode_dicom(storage.read(u)).pixels): p for p, u in chosen.items()}
    for uri in uris:  # the stub classifier scores every original 0.1
        assert decode_dicom(storage.read(uri)).pixels[:CORNER, :CORNER].mean() < 0.95
    inner = load_model(histogram_model, storage, expected_method="histogram").harmonizer
    assert inner.target_histogram is not None and inner.target_histogram.shape == (HIST_BINS,)
    out = tmp_path_factory.mktemp("planted")
    summary = run_archive(
        archive, histogram_model, out, PlantedExecutor(PlantedHarmonizer(inner, plants))
    )
    assert summary.counts["ok"] == len(uris) and summary.counts["error"] == 0
    return out, {u: p for p, u in chosen.items()}


@pytest.mark.timeout(120)
def test_a_run_flags_exactly_the_planted_failures(planted_run: tuple[Path, dict[str, str]]) -> None:
    out, planted = planted_run
    rows = read_manifest(str(out)).to_pandas()
    flags = {r.source_uri: list(r.qa_flags) for r in rows.itertuples()}
    flagged = {uri: codes for uri, codes in flags.items() if codes}
    by_plant = {planted[uri]: codes for uri, codes in flagged.items() if uri in planted}
    assert set(flagged) == set(planted), flags
    # A constant keeps an SSIM of about 0.6 (SSIM's structure term is 1 where both windows are
    # flat): ``flat`` is what catches it, and its histogram left the target's.
    assert by_plant == {
        "invert": ["inverted", "low_ssim"],
        "constant": ["flat", "hist_away"],
        "corner": ["score_flip"],
    }
    clean = rows[~rows.source_uri.isin(list(planted))]
    assert (clean.qa_flags.map(len) == 0).all() and clean.ssim.min() > 0.3


def _table_rows(markdown: str, title: str) -> list[str]:
    section = markdown.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]


@pytest.mark.timeout(120)
def test_the_report_lists_exactly_the_flagged_images(
    planted_run: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    from harmonize.report import build_report

    out, planted = planted_run
    report = build_report([str(out)], str(tmp_path / "report"))
    lines = _table_rows(report.markdown, "QA")[1:]  # the header row first
    listed = {uri for uri in planted if any(f"`{uri}`" in line for line in lines)}
    assert len(lines) == len(planted) and listed == set(planted)
    assert "QA: 3 of 8 ok images flagged" in report.markdown
    assert (tmp_path / "report" / "qa.png").stat().st_size > 1000
    html = Path(report.html_path).read_text()
    assert 'src="qa.png"' in html and escape(REASONS["score_flip"]) in html
    rows = read_manifest(str(out)).to_pandas()
    assert isinstance(rows, pd.DataFrame) and len(rows) == 8
