"""The report as a person sees it: rendered by a real headless browser (Debian's chromium), every
figure loads, nothing runs off the side of the page, and the screenshot shows the figures."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harmonize.report import build_report

from report_samples import histogram, make_row, write_dicom, write_manifest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"
)
WIDTH, HEIGHT = 1280, 2400
#: Run in the page once it has loaded: what a reader would notice, written into the DOM.
CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0))
                       .map(i => i.getAttribute("src"));
  const overflow = document.documentElement.scrollWidth > window.innerWidth;
  document.body.setAttribute("data-check", JSON.stringify(
      {images: images.length, broken: broken, overflow: overflow,
       tables: document.querySelectorAll("table").length}));
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=5000",
    ]  # fmt: skip
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


def _report(tmp_path: Path, model_dir: str) -> Path:
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    rows = []
    for k in range(4):
        uid = f"1.2.9.{k}"
        original = (0.25 + 0.4 * xx * yy + 0.05 * k) ** 1.4
        src = write_dicom(tmp_path / "archive" / f"{k}.dcm", original, uid)
        out = write_dicom(tmp_path / "out" / "images" / f"{k}.dcm", np.sqrt(original), uid)
        rows.append(
            make_row(
                uid, "r", k, source_uri=src, out_uri=out, model_uri=model_dir,
                ssim=0.8 + 0.02 * k, hist_in=histogram(rng, 0.3), hist_out=histogram(rng, 0.5),
            )
        )  # fmt: skip
    write_manifest(tmp_path / "out", "r", rows)
    report = build_report([str(tmp_path / "out")], str(tmp_path / "report"))
    return Path(report.html_path)


def test_the_page_renders_with_every_figure_in_a_real_browser(
    tmp_path: Path, model_dir: str
) -> None:
    html = _report(tmp_path, model_dir)
    checked = html.with_name("checked.html")  # beside the PNGs, so their relative links work
    checked.write_text(html.read_text().replace("</body>", f"{CHECK}</body>"))
    dom = _chromium(tmp_path, "--dump-dom", checked.as_uri()).stdout
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, dom[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check == {"images": 3, "broken": [], "overflow": False, "tables": 2}

    shot = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={shot}", html.as_uri())
    with Image.open(shot) as png:
        assert png.size == (WIDTH, HEIGHT)
        pixels = np.asarray(png.convert("L"), dtype=np.float32)
    # The figures and tables put ink on the page: a blank or unstyled page would not.
    ink = float((pixels < 200).mean())
    assert 0.02 < ink < 0.6, ink
