"""Table 1 and the histograms: which rows count, distances, methods and configs, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harmonize.errors import HarmonizeError
from harmonize.metrics.histogram import wasserstein_1d
from harmonize.report import build_report

from report_samples import (
    TARGET_HIST,
    histogram,
    make_row,
    reference_w1,
    section_rows,
    write_manifest,
)


def rerun_manifest(out: Path, model_uri: str) -> dict[str, Any]:
    """Run 1: a, b, c ok and d error; run 2 (later, but its id sorts first): a, b, c skipped,
    a newer ok row for a, d ok. Returns the rows that must count."""
    rng = np.random.default_rng(1)
    first = {
        i: make_row(
            i, "run-2", m, ssim=s, hist_in=histogram(rng, 0.35), hist_out=histogram(rng, 0.5)
        )
        for i, m, s in (("a", 1, 0.80), ("b", 2, 0.90), ("c", 3, 0.70))
    }
    d_error = make_row("d", "run-2", 4, status="error", error="harmonize: ValueError: bad\ntrace")
    newer_a = make_row(
        "a", "run-1", 60, ssim=0.95, hist_in=histogram(rng, 0.3), hist_out=histogram(rng, 0.55)
    )
    d_ok = make_row(
        "d", "run-1", 61, ssim=0.85, hist_in=histogram(rng, 0.4), hist_out=histogram(rng, 0.52)
    )
    skipped = [make_row(i, "run-1", 59, status="skipped") for i in ("c", "b", "a")]
    for row in [*first.values(), d_error, newer_a, d_ok, *skipped]:
        row["model_uri"] = model_uri
    write_manifest(out, "run-2", [first["c"], d_error, first["a"], first["b"]])
    write_manifest(out, "run-1", [d_ok, *skipped, newer_a])
    return {"a": newer_a, "b": first["b"], "c": first["c"], "d": d_ok}


def test_rerun_counts_the_newest_ok_row_of_each_image_once(tmp_path: Path, model_dir: str) -> None:
    counted = rerun_manifest(tmp_path / "out", model_dir)
    report = build_report([str(tmp_path / "out")], str(tmp_path / "report"))
    (s,) = report.summaries
    ssim = np.array([counted[i]["ssim"] for i in "abcd"])
    assert (s.n_ok, s.n_error, s.rows.n_error_rows) == (4, 0, 1)
    assert list(s.rows.ok["image_id"]) == ["a", "b", "c", "d"]
    assert s.ssim_mean == pytest.approx(np.mean(ssim), abs=1e-12)
    assert s.ssim_std == pytest.approx(np.std(ssim), abs=1e-12)
    row = section_rows(report.markdown, "Summary")["histogram"]
    assert row[1:4] == ["4", "0", f"{np.mean(ssim):.4f} ± {np.std(ssim):.4f}"]


def test_distances_equal_wasserstein_of_the_counted_histograms(
    tmp_path: Path, model_dir: str
) -> None:
    counted = rerun_manifest(tmp_path / "out", model_dir)
    report = build_report([str(tmp_path / "out")], str(tmp_path / "report"))
    (s,) = report.summaries
    hist_in = np.array([counted[i]["hist_in"] for i in "abcd"], dtype=np.float64)
    hist_out = np.array([counted[i]["hist_out"] for i in "abcd"], dtype=np.float64)
    target = np.array(TARGET_HIST, dtype=np.float64)
    before = wasserstein_1d(hist_in.mean(axis=0), target)
    after = wasserstein_1d(hist_out.mean(axis=0), target)
    assert s.mean_hist is not None and s.per_image is not None
    assert s.mean_hist.before == pytest.approx(before, rel=1e-9)
    assert s.mean_hist.after == pytest.approx(after, rel=1e-9)
    assert s.mean_hist.before == pytest.approx(reference_w1(hist_in.mean(axis=0), target), rel=1e-5)
    per_before = np.mean([reference_w1(h, target) for h in hist_in])
    per_after = np.mean([reference_w1(h, target) for h in hist_out])
    assert s.per_image.before == pytest.approx(per_before, rel=1e-5)
    assert s.per_image.after == pytest.approx(per_after, rel=1e-5)
    assert s.mean_hist.after < s.mean_hist.before  # the rows move toward the target
    row = section_rows(report.markdown, "Summary")["histogram"]
    change = 100 * (after - before) / before
    assert row[4:7] == [f"{before:.4f}", f"{after:.4f}", f"{change:+.1f} %".replace("-", "\u2212")]
    assert "model card" in report.markdown


# -- several manifests and configurations ----------------------------------------------------------


def test_two_manifests_of_two_methods_give_two_rows(tmp_path: Path, model_dir: str) -> None:
    rng = np.random.default_rng(2)
    for method, ssims in (("histogram", [0.9, 0.8]), ("nyul", [0.7, 0.75, 0.72])):
        rows = [
            make_row(
                f"img{k}",
                f"run-{method}",
                k,
                method=method,
                config_hash=f"cfg-{method}",
                model_uri=model_dir,
                ssim=v,
                hist_in=histogram(rng, 0.3),
                hist_out=histogram(rng, 0.5),
                label=None,
            )
            for k, v in enumerate(ssims)
        ]
        write_manifest(tmp_path / method, f"run-{method}", rows)
    report = build_report(
        [str(tmp_path / "histogram"), str(tmp_path / "nyul" / "manifest")], str(tmp_path / "r")
    )
    assert [(s.label, s.n_ok) for s in report.summaries] == [("histogram", 2), ("nyul", 3)]
    lines = section_rows(report.markdown, "Summary")
    assert set(lines) == {"histogram", "nyul"}
    assert lines["nyul"][3] == f"{np.mean([0.7, 0.75, 0.72]):.4f} ± {np.std([0.7, 0.75, 0.72]):.4f}"


def test_several_configs_of_one_method_are_told_apart(tmp_path: Path, model_dir: str) -> None:
    rows = [
        make_row("x", "r1", 1, config_hash="aaaa1111", ssim=0.9, model_uri=model_dir),
        make_row("x", "r2", 2, config_hash="bbbb2222", mode="curve", ssim=0.6, model_uri=model_dir),
    ]
    write_manifest(tmp_path / "out", "r1", rows)
    report = build_report([str(tmp_path / "out")], str(tmp_path / "r"))
    labels = {s.label: s.ssim_mean for s in report.summaries}
    assert labels == {"histogram (direct, aaaa1111)": 0.9, "histogram (curve, bbbb2222)": 0.6}
    assert set(section_rows(report.markdown, "Summary")) == set(labels)


# -- target histogram sources ---------------------------------------------------------------------


def test_without_a_card_the_target_sites_rows_give_the_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    source = [
        make_row(
            f"s{k}", "r", k, ssim=0.9, hist_in=histogram(rng, 0.3), hist_out=histogram(rng, 0.5)
        )
        for k in range(3)
    ]
    target = [
        make_row(
            f"t{k}",
            "r",
            k,
            site="shenzhen-like",
            ssim=0.99,
            hist_in=histogram(rng, 0.55),
            hist_out=histogram(rng, 0.55),
        )
        for k in range(2)
    ]
    write_manifest(tmp_path / "out", "r", source + target)

    report = build_report(
        [str(tmp_path / "out")], str(tmp_path / "r1"), target_site="shenzhen-like"
    )
    (s,) = report.summaries
    assert s.n_ok == 3  # the target site's own rows are left out of the method table
    expected_target = np.array([r["hist_in"] for r in target], dtype=np.float64).mean(axis=0)
    mean_in = np.array([r["hist_in"] for r in source], dtype=np.float64).mean(axis=0)
    assert s.mean_hist is not None
    assert s.mean_hist.before == pytest.approx(wasserstein_1d(mean_in, expected_target), rel=1e-9)
    assert '2 images of site "shenzhen-like"' in report.markdown

    report = build_report([str(tmp_path / "out")], str(tmp_path / "r2"))
    assert all(s.mean_hist is None and s.per_image is None for s in report.summaries)
    assert "no target histogram" in report.markdown
    assert section_rows(report.markdown, "Summary")["histogram"][4:] == ["n/a"] * 6


# -- robustness -----------------------------------------------------------------------------------


def test_empty_manifest_raises_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(HarmonizeError, match=r"no manifest rows under .*run `harmonize run` first"):
        build_report([str(tmp_path / "out")], str(tmp_path / "r"))
    with pytest.raises(HarmonizeError, match="no manifest rows"):
        build_report([str(tmp_path / "missing")], str(tmp_path / "r"))


def test_all_error_rows_give_an_error_section(tmp_path: Path) -> None:
    rows = [
        make_row(
            None,
            "r",
            1,
            source_uri="/archive/x1.dcm",
            status="error",
            error="decode: DicomError: not a DICOM file\nTraceback ...",
        ),
        make_row(
            None,
            "r",
            2,
            source_uri="/archive/x2.dcm",
            status="error",
            error="decode: DicomError: not a DICOM file\nTraceback ...",
        ),
        make_row(
            "u3",
            "r",
            3,
            source_uri="/archive/x3.dcm",
            status="error",
            error="harmonize: ModelError: shape",
        ),
    ]
    write_manifest(tmp_path / "out", "r", rows)
    report = build_report([str(tmp_path / "out")], str(tmp_path / "r"))
    (s,) = report.summaries
    assert (s.n_ok, s.n_error, s.ssim_mean, s.mean_hist) == (0, 3, None, None)
    errors = report.markdown.split("## Errors", 1)[1].split("\n## ", 1)[0]
    assert "| histogram | decode: DicomError: not a DICOM file | 2 | /archive/x2.dcm |" in errors
    assert "| histogram | harmonize: ModelError: shape | 1 | /archive/x3.dcm |" in errors
    assert "Traceback" not in errors
    assert report.figure_paths == ()
    assert Path(report.html_path).is_file()
