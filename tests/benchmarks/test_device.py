"""`harmonize bench device --smoke` runs end to end on a CPU without Ray and writes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harmonize.benchmarks.device import SECTIONS, Section, markdown, run_device_benchmark
from harmonize.cli.bench import bench_device
from harmonize.errors import HarmonizeError

# What the bare GPU machine lacks (Ray above all) cannot be imported in the run or its children.
ABSENT = ("ray", "boto3", "dicomweb_client", "imagecodecs", "jpeg_ls", "tensorboard")


@pytest.mark.timeout(180)
def test_smoke_writes_every_section_without_ray(tmp_path: Path) -> None:
    for name in ABSENT:
        (tmp_path / "absent" / name).mkdir(parents=True)
        (tmp_path / "absent" / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed on the GPU machine')\n"
        )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'absent'}{os.pathsep}{root}"}
    out = tmp_path / "out"
    done = subprocess.run(  # the command docs/benchmarks.md gives for a GPU machine
        [sys.executable, "-m", "harmonize.cli.main", "bench", "device", "--smoke",
         "--out", str(out), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "device-bench.json").read_text())
    assert report["smoke"] is True and report["machine"]["torch"]
    assert list(report["sections"]) == list(SECTIONS)
    assert bench_device.params[2].default == ",".join(SECTIONS)  # the CLI runs every section
    for name, section in report["sections"].items():
        # Every section measured something or says why not; nothing failed for want of Ray.
        assert section["figures"] or section["unmeasured"], name
        assert not any("not installed on the GPU" in line for line in section["unmeasured"])
    figures = {f["name"]: f for section in report["sections"].values() for f in section["figures"]}
    assert figures["cyclegan reference pairs/s"]["value"] > 0
    assert figures["cyclegan tuned / reference"]["target"] == ">= 8"
    assert figures["max |ours - scikit-image|"]["meets"] is True  # SSIM parity holds anyway
    assert figures["J2K lossless CPU images/s (one core)"]["value"] > 0
    stream = report["sections"]["streaming"]
    assert {"curve images/s end to end", "direct images/s end to end"} <= set(figures)
    assert stream["details"]["curve_decoders"] == "cpu"  # no GPU here
    decode = report["sections"]["decode"]["unmeasured"]
    assert any(line.startswith("J2K lossless GPU decode:") for line in decode)
    md = (out / "device-bench.md").read_text()
    assert md.startswith("# harmonize bench device (smoke")
    assert "| cyclegan tuned / reference |" in md and "- unmeasured: J2K lossless GPU" in md
    checks = report["sections"]["checks"]  # the GPU test modules ran; their GPU tests skipped
    assert figures["tests failed (GPU test modules)"]["value"] == 0
    assert checks["details"]["skipped"] >= 1 and "skipped here" in checks["unmeasured"][0]


def test_unknown_section_is_refused_in_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(HarmonizeError, match="unknown section.*'gpu'.*training"):
        run_device_benchmark(tmp_path, smoke=True, sections=["gpu"], echo=lambda s: None)


def test_markdown_marks_targets_and_unmeasured_figures() -> None:
    section = Section("decode")
    section.figure("J2K GPU / one CPU core", 6.0, "x", 5.0)
    section.figure("max |GPU - CPU|", 1.0, "", 0.0, at_most=True)
    section.missing("HTJ2K lossless", "no encoder here")
    assert section.figures[0]["meets"] is True and section.figures[0]["of_target"] == 1.2
    assert section.figures[1]["meets"] is False and section.figures[1]["of_target"] is None
    report = {
        "smoke": False,
        "machine": {"machine": "x86_64", "cpus": 16, "python": "3.12", "gpu": "H100",
                    "torch": "2.9", "cuda": "13.0", "nvimgcodec": None},
        "sections": {"decode": {"seconds": 1.0, "figures": section.figures,
                                "unmeasured": section.unmeasured, "details": {"batch": 64}}},
    }  # fmt: skip
    md = markdown(report)
    assert "| J2K GPU / one CPU core | 6 x | >= 5 (met) | 1.20 |" in md
    assert "| max |GPU - CPU| | 1  | <= 0 (not met) |  |" in md
    assert "- unmeasured: HTJ2K lossless: no encoder here" in md
    assert "nvImageCodec: not installed" in md and "batch: 64" in md
