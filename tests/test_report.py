"""Tests for harmonize.report: manifests built from known rows, numbers checked exactly."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from scipy.stats import wasserstein_distance
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from harmonize.errors import HarmonizeError
from harmonize.io.manifest import ManifestWriter, empty_row
from harmonize.io.storage import Storage
from harmonize.methods.histogram import HistogramMatching
from harmonize.metrics.histogram import HIST_BINS, wasserstein_1d
from harmonize.metrics.roc import auc_ci_delong, auc_difference_delong
from harmonize.report import build_report

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
CENTERS = (np.arange(HIST_BINS) + 0.5) / HIST_BINS


def histogram(rng: np.random.Generator, center: float, spread: float = 0.12) -> list[float]:
    """A 64-bin probability histogram around ``center`` (float32 values, as the manifest holds)."""
    counts = np.exp(-0.5 * ((CENTERS - center) / spread) ** 2) * rng.uniform(0.5, 1.5, HIST_BINS)
    return (counts / counts.sum()).astype(np.float32).tolist()


TARGET_HIST = histogram(np.random.default_rng(99), 0.55)


def reference_w1(p: Any, q: Any) -> float:
    """W1 between two histograms on bin centres, by scipy (independent of harmonize)."""
    return float(wasserstein_distance(CENTERS, CENTERS, np.asarray(p), np.asarray(q)))


def make_row(image_id: str | None, run_id: str, minutes: float, **values: Any) -> dict[str, Any]:
    row = empty_row()
    row.update(
        image_id=image_id,
        source_uri=f"/archive/mc-like/{image_id}.dcm",
        source_etag="1-1",
        site="mc-like",
        method="histogram",
        mode="direct",
        model_uri="/nonexistent-model",
        config_hash="cfg-a",
        run_id=run_id,
        status="ok",
        processed_at=T0 + timedelta(minutes=minutes),
    )
    row.update(values)
    return row


def write_manifest(
    out: Path | str, run_id: str, rows: list[dict[str, Any]], store: Storage | None = None
) -> None:
    writer = ManifestWriter(str(out), run_id, store or Storage())
    writer.add(rows)
    writer.close()


@pytest.fixture()
def model_dir(tmp_path: Path) -> str:
    """A real fitted histogram-matching model whose card carries TARGET_HIST."""
    uri = str(tmp_path / "model")
    image = np.linspace(0.0, 1.0, 256, dtype=np.float32).reshape(16, 16)
    HistogramMatching().fit([image]).save(uri, card={"target_histogram": TARGET_HIST})
    return uri


def summary_lines(markdown: str) -> dict[str, list[str]]:
    """The Summary table's data rows, by method label, as lists of cells."""
    section = markdown.split("## Summary", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in rows]
    return {c[0]: c for c in cells}


# -- which rows count -----------------------------------------------------------------------------


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
    row = summary_lines(report.markdown)["histogram"]
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
    row = summary_lines(report.markdown)["histogram"]
    reduction = 100 * (before - after) / before
    assert row[4:7] == [f"{before:.4f}", f"{after:.4f}", f"{reduction:+.1f}%"]
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
    lines = summary_lines(report.markdown)
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
    assert set(summary_lines(report.markdown)) == set(labels)


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
    assert summary_lines(report.markdown)["histogram"][4:] == ["n/a"] * 6


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


# -- figures and HTML -----------------------------------------------------------------------------


def write_dicom(path: Path, pixels: np.ndarray, sop_uid: str) -> str:
    """A minimal 12-bit MONOCHROME2 CR image."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CR_IMAGE_STORAGE, sop_uid, "CR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.clip(pixels, 0, 1) * 4095).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def test_html_shows_every_figure_and_the_montage_skips_unreadable_images(
    tmp_path: Path, model_dir: str
) -> None:
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:300, 0:240] / 300.0
    rows = []
    for k in range(3):
        uid = f"1.2.3.{k}"
        original = (0.3 + 0.2 * xx + 0.05 * k) ** 1.5
        src = write_dicom(tmp_path / "archive" / f"{k}.dcm", original, uid)
        out = write_dicom(tmp_path / "out" / "images" / f"{k}.dcm", np.sqrt(original), uid)
        rows.append(
            make_row(
                uid,
                "r",
                k,
                source_uri=src,
                out_uri=out,
                model_uri=model_dir,
                ssim=0.9 - 0.01 * k,
                hist_in=histogram(rng, 0.3),
                hist_out=histogram(rng, 0.5),
            )
        )
    rows[1]["out_uri"] = str(tmp_path / "out" / "images" / "gone.dcm")  # deleted since
    write_manifest(tmp_path / "out", "r", rows)

    report = build_report([str(tmp_path / "out")], str(tmp_path / "report"))
    names = [Path(p).name for p in report.figure_paths]
    assert names == ["histograms.png", "ssim.png", "montage.png"]
    html = Path(report.html_path).read_text()
    for name in names:
        assert f'src="{name}"' in html
        with Image.open(tmp_path / "report" / name) as png:
            png.verify()
            assert png.format == "PNG"
    with Image.open(tmp_path / "report" / "montage.png") as png:
        assert png.width > 2 * png.height  # one row of 2 pairs (the unreadable one left out)
    assert "gone.dcm" in report.markdown
    # The HTML shows the same tables as the Markdown.
    separators = re.findall(r"^\|(?: ---:? \|)+$", report.markdown, flags=re.MULTILINE)
    assert html.count("<table>") == len(separators) == 2  # summary and runs
    assert "<th>mean-hist W1 before</th>" in html
    assert Path(report.markdown_path).read_text() == report.markdown
    assert re.search(r"<td>histogram</td><td class=\"num\">3</td>", html)


@pytest.mark.slow
def test_manifests_cards_and_images_are_read_from_s3(s3_server: Any, tmp_path: Path) -> None:
    store = Storage(endpoint_url=s3_server.endpoint_url)
    bucket = s3_server.create_bucket("report-test")
    model_uri = f"{bucket}/models/histogram"
    image = np.linspace(0.0, 1.0, 256, dtype=np.float32).reshape(16, 16)
    HistogramMatching().fit([image]).save(model_uri, store, card={"target_histogram": TARGET_HIST})
    local = write_dicom(tmp_path / "a.dcm", np.full((32, 32), 0.4), "1.2.9")
    store.write(f"{bucket}/archive/a.dcm", Path(local).read_bytes())
    rng = np.random.default_rng(5)
    row = make_row(
        "1.2.9",
        "r",
        1,
        source_uri=f"{bucket}/archive/a.dcm",
        out_uri=f"{bucket}/archive/a.dcm",
        model_uri=model_uri,
        ssim=0.9,
        hist_in=histogram(rng, 0.3),
        hist_out=histogram(rng, 0.5),
    )
    write_manifest(f"{bucket}/out", "r", [row], store)
    report = build_report([f"{bucket}/out"], str(tmp_path / "report"), store)
    (s,) = report.summaries
    assert s.n_ok == 1 and s.mean_hist is not None and "model card" in s.target.source
    assert [Path(p).name for p in report.figure_paths][-1] == "montage.png"


# -- classifier evidence (Table 2) ---------------------------------------------------------------

SOURCE_IDS = [f"s{k:03d}" for k in range(80)]
TARGET_IDS = [f"t{k:03d}" for k in range(50)]
DIFFERING, NO_LABEL_ANYWHERE, NO_SCORE_OUT, ERROR_IN_A = "s005", "s076", "s078", "s079"


def section_rows(markdown: str, title: str) -> dict[str, list[str]]:
    """The data rows of the first table of a section, by first cell, as lists of cells."""
    section = markdown.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in rows]
    return {c[0]: c for c in cells}


def classifier_truth(seed: int = 11) -> dict[str, Any]:
    """Labels and scores per image_id, as the classifier and the labels table would give them."""
    rng = np.random.default_rng(seed)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    label = {i: int(rng.random() < 0.4) for i in SOURCE_IDS + TARGET_IDS}
    y_src = np.array([label[i] for i in SOURCE_IDS])
    y_tgt = np.array([label[i] for i in TARGET_IDS])
    return {
        "label": label,
        "score_in": dict(zip(SOURCE_IDS, sigmoid(0.8 * y_src + rng.normal(0, 1, 80)), strict=True))
        | dict(zip(TARGET_IDS, sigmoid(2.5 * y_tgt + rng.normal(0, 1, 50)), strict=True)),
        "histogram": dict(zip(SOURCE_IDS, sigmoid(2.0 * y_src + rng.normal(0, 1, 80)), strict=True))
        | dict(zip(TARGET_IDS, sigmoid(2.5 * y_tgt + rng.normal(0, 1, 50)), strict=True)),
        "nyul": dict(zip(SOURCE_IDS, sigmoid(1.0 * y_src + rng.normal(0, 1, 80)), strict=True)),
        "newer_score_in": 0.05 + 0.9 * rng.random(),  # run-b's differing score_in of DIFFERING
    }


def write_classifier_manifests(out: Path, truth: dict[str, Any], shuffle: int | None) -> list[str]:
    """Three manifests: run-a (histogram, source + target images; some labels missing, one error,
    one row without score_out), run-b (nyul, newer; holds the missing labels, one differing
    score_in), run-c (histogram re-run: skipped rows only). ``shuffle`` permutes each manifest's
    rows differently."""
    label, score_in = truth["label"], truth["score_in"]
    rng = np.random.default_rng(12)
    run_a = []
    for k, i in enumerate(SOURCE_IDS + TARGET_IDS):
        row = make_row(
            i,
            "run-a",
            k,
            site="mc-like" if i.startswith("s") else "shenzhen-like",
            label=None if k < 20 or i == NO_LABEL_ANYWHERE else label[i],
            ssim=0.9,
            hist_in=histogram(rng, 0.3),
            hist_out=histogram(rng, 0.5),
            score_in=score_in[i],
            score_out=truth["histogram"][i],
        )
        if i == ERROR_IN_A:
            row.update(status="error", error="harmonize: ValueError: bad", score_in=None)
            row.update(score_out=None, ssim=None)
        if i == NO_SCORE_OUT:
            row["score_out"] = None
        run_a.append(row)
    run_b = [
        make_row(
            i,
            "run-b",
            200 + k,
            method="nyul",
            config_hash="cfg-n",
            label=None if i in (NO_LABEL_ANYWHERE, "s077") else label[i],
            ssim=0.8,
            hist_in=histogram(rng, 0.3),
            hist_out=histogram(rng, 0.45),
            score_in=truth["newer_score_in"] if i == DIFFERING else score_in[i] + 1e-9,
            score_out=truth["nyul"][i],
        )
        for k, i in enumerate(SOURCE_IDS)
    ]
    run_c = [make_row(i, "run-c", 300 + k, status="skipped") for k, i in enumerate(SOURCE_IDS[:30])]
    uris = []
    for name, rows in (("a", run_a), ("b", run_b), ("c", run_c)):
        if shuffle is not None:
            order = np.random.default_rng(shuffle + ord(name)).permutation(len(rows))
            rows = [rows[j] for j in order]
        write_manifest(out / name, f"run-{name}", rows)
        uris.append(str(out / name))
    return uris


def expected_auc(truth: dict[str, Any], ids: list[str], scores: dict[str, float]) -> float:
    return float(roc_auc_score([truth["label"][i] for i in ids], [scores[i] for i in ids]))


def test_table_2_equals_sklearn_on_the_rows_joined_by_image_id(tmp_path: Path) -> None:
    truth = classifier_truth()
    uris = write_classifier_manifests(tmp_path / "runs", truth, shuffle=None)
    report = build_report(uris, str(tmp_path / "report"), target_site="shenzhen-like")
    table = report.classifier
    assert table is not None
    by_name = {r.condition: r for r in table.rows}
    assert list(by_name) == [
        'in-domain (target site "shenzhen-like")',
        'original (source site "mc-like")',
        "histogram",
        "nyul",
    ]
    original_ids = [i for i in SOURCE_IDS if i != NO_LABEL_ANYWHERE]  # s079: ok in run-b
    original_scores = truth["score_in"] | {DIFFERING: truth["newer_score_in"]}  # newest row
    histogram_ids = [i for i in original_ids if i not in (NO_SCORE_OUT, ERROR_IN_A)]
    expected = {
        'in-domain (target site "shenzhen-like")': (TARGET_IDS, truth["score_in"]),
        'original (source site "mc-like")': (original_ids, original_scores),
        "histogram": (histogram_ids, truth["histogram"]),
        "nyul": (original_ids, truth["nyul"]),
    }
    for name, (ids, scores) in expected.items():
        row = by_name[name]
        assert list(row.data["image_id"]) == ids
        assert list(row.data["label"]) == [truth["label"][i] for i in ids]
        assert row.auc == pytest.approx(expected_auc(truth, ids, scores), abs=1e-7)
        labels = [truth["label"][i] for i in ids]
        _, low, high = auc_ci_delong(labels, [scores[i] for i in ids])
        assert row.ci is not None and row.ci == pytest.approx((low, high), abs=1e-7)
        assert row.auc is not None and row.ci[0] < row.auc < row.ci[1]
        assert row.roc is not None
        fpr, tpr, _ = sk_roc_curve(labels, [scores[i] for i in ids])
        np.testing.assert_allclose(row.roc[0], fpr)
        np.testing.assert_allclose(row.roc[1], tpr)
    # Paired change: score_out vs the original score_in of the same images.
    for name, ids in (("histogram", histogram_ids), ("nyul", original_ids)):
        labels = [truth["label"][i] for i in ids]
        reference = auc_difference_delong(
            labels, [truth[name][i] for i in ids], [original_scores[i] for i in ids]
        )
        assert by_name[name].n_paired == len(ids)
        assert by_name[name].change == pytest.approx(reference, abs=1e-7)
    hist, change = by_name["histogram"], by_name["histogram"].change
    assert change is not None and hist.ci is not None
    assert change.diff > 0 and change.p_value < 0.05  # the harmonized scores separate better

    # The Markdown table shows the same numbers.
    lines = section_rows(report.markdown, "Classifier ROC AUC")
    assert lines["histogram"] == [
        "histogram",
        "`score_out`",
        f"{len(histogram_ids)} ({hist.n_pos} / {hist.n_neg})",
        f"{hist.auc:.4f}",
        f"[{hist.ci[0]:.4f}, {hist.ci[1]:.4f}]",
        f"{change.diff:+.4f}",
        f"[{change.low:+.4f}, {change.high:+.4f}]",
        "< 0.001" if change.p_value < 0.001 else f"{change.p_value:.3f}",
    ]
    assert lines['original (source site "mc-like")'][5] == "(reference)"
    section = report.markdown.split("## Classifier ROC AUC", 1)[1].split("\n## ", 1)[0]
    assert "**Table 2.**" in section
    assert "1 image(s) have `score_in` values that differ by more than 1e-06" in section
    assert "e.g. `s005`" in section
    assert "histogram: left out 1 without an `ok` row, 1 without a 0/1 label, " in section
    assert "1 without `score_out`" in section
    assert "histogram: the change is measured on the 77 images" in section
    assert "**Table 1.**" in report.markdown.split("## Summary", 1)[1].split("\n## ", 1)[0]

    # roc.png is written and shown; the HTML holds the section and its table.
    assert [Path(p).name for p in report.figure_paths if p.endswith("roc.png")] == ["roc.png"]
    with Image.open(tmp_path / "report" / "roc.png") as png:
        png.verify()
        assert png.format == "PNG"
    with Image.open(tmp_path / "report" / "histograms.png") as png:
        assert png.width > 2.8 * png.height  # overlay + one panel per method, in one row
    html = Path(report.html_path).read_text()
    assert "<h2>Classifier ROC AUC</h2>" in html and 'src="roc.png"' in html
    assert "<th>ΔAUC vs original</th>" in html
    assert f'<td class="num">{hist.auc:.4f}</td>' in html


def test_table_2_does_not_depend_on_row_order(tmp_path: Path) -> None:
    truth = classifier_truth()
    reports = [
        build_report(
            write_classifier_manifests(tmp_path / f"runs{k}", truth, shuffle=shuffle),
            str(tmp_path / f"report{k}"),
            target_site="shenzhen-like",
        )
        for k, shuffle in enumerate((None, 1, 2))
    ]
    tables = [r.classifier for r in reports]
    assert all(t is not None for t in tables)
    first = tables[0]
    assert first is not None
    for table in tables[1:]:
        assert table is not None and table.notes == first.notes
        for ours, theirs in zip(table.rows, first.rows, strict=True):
            assert (ours.condition, ours.auc, ours.ci, ours.change, ours.n_paired) == (
                theirs.condition,
                theirs.auc,
                theirs.ci,
                theirs.change,
                theirs.n_paired,
            )
            assert ours.data.equals(theirs.data)
    sections = [
        r.markdown.split("## Classifier ROC AUC", 1)[1].split("\n## ", 1)[0] for r in reports
    ]
    assert sections[0] == sections[1] == sections[2]
    assert len(section_rows(reports[0].markdown, "Classifier ROC AUC")) == 4


def test_table_2_without_target_site_and_with_one_class(tmp_path: Path) -> None:
    rows = [
        make_row(f"s{k}", "r", k, label=k % 2, score_in=0.1 * k + 0.05 * (k % 2), score_out=0.5)
        for k in range(8)
    ] + [
        make_row(f"t{k}", "r", 10 + k, site="shenzhen-like", label=1, score_in=0.9)
        for k in range(3)
    ] + [
        make_row(f"s{k}", "r2", 20 + k, method="nyul", config_hash="n", label=1, score_out=0.3)
        for k in range(1, 8, 2)  # only the positive images
    ]  # fmt: skip
    write_manifest(tmp_path / "out", "r", rows)
    report = build_report([str(tmp_path / "out")], str(tmp_path / "report"))
    table = report.classifier
    assert table is not None
    assert [r.condition for r in table.rows] == ["original (all sites)", "histogram", "nyul"]
    original, histogram, nyul = table.rows
    ids = [f"s{k}" for k in range(8)] + [f"t{k}" for k in range(3)]
    labels = [k % 2 for k in range(8)] + [1, 1, 1]
    scores = [0.1 * k + 0.05 * (k % 2) for k in range(8)] + [0.9] * 3
    assert list(original.data["image_id"]) == sorted(ids)
    assert original.auc == pytest.approx(roc_auc_score(labels, scores))
    assert histogram.auc == 0.5  # every score_out ties
    # paired on the 8 source images (the target images have no score_out): 0.5 - 10/16
    assert histogram.n_paired == 8 and histogram.change is not None
    assert histogram.change.diff == pytest.approx(0.5 - roc_auc_score(labels[:8], scores[:8]))
    assert histogram.change.diff == pytest.approx(-0.125)
    assert nyul.auc is None and nyul.ci is None and nyul.change is None  # positives only
    lines = section_rows(report.markdown, "Classifier ROC AUC")
    assert lines["nyul"][2:] == ["4 (4 / 0)", "n/a", "n/a", "n/a", "n/a", "n/a"]
    assert "No target site named" in report.markdown
    assert "nyul: no AUC, its images are all of one class." in report.markdown
    assert Path(tmp_path / "report" / "roc.png").is_file()
