"""The HTML page and its figures (histograms, SSIM, ROC, montage), locally and on S3."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from harmonize.io.storage import Storage
from harmonize.methods.histogram import HistogramMatching
from harmonize.report import build_report

from report_samples import (
    TARGET_HIST,
    histogram,
    make_row,
    write_dicom,
    write_manifest,
)


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
