"""The checks section of `harmonize bench device`: the test modules that only run where a GPU is
(CUDA graphs in the GAN step, GPU decode through nvImageCodec), run by pytest in a child process
within the section's budget, so that the one prepared GPU command also says whether the GPU
paths are right, not only how fast they are.

It needs the source checkout's ``tests/`` folder and pytest (on a bare GPU machine: the wheels
pytest, pluggy, iniconfig and pygments, see docs/benchmarks.md); without them, or without a GPU
(where every one of these tests skips), the section says so instead.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harmonize.benchmarks.device import Plan, Section

#: The modules whose tests need a GPU (each skips with a reason elsewhere).
GPU_TEST_MODULES = ("tests/gan/test_cuda.py", "tests/dicom/test_gpu_decode.py")
ROOT = Path(__file__).resolve().parents[2]


def run_checks(plan: Plan, section: Section, echo: Callable[[str], Any]) -> None:
    modules = [m for m in GPU_TEST_MODULES if (ROOT / m).is_file()]
    if not modules:
        section.missing("GPU tests", f"no tests/ folder next to the package ({ROOT})")
        return
    if importlib.util.find_spec("pytest") is None:
        section.missing("GPU tests", "pytest is not installed (bring its wheels)")
        return
    report = plan.workdir / "gpu-tests.xml"
    left = plan.deadline - time.perf_counter()
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
        "--import-mode=importlib", "--rootdir", str(ROOT), "-o", "pythonpath=tests",
        f"--junitxml={report}", *modules,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=max(left, 1.0),
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )
    except subprocess.TimeoutExpired:
        section.missing("GPU tests", f"not done within the section's remaining {left:.0f} s")
        return
    counts = _counts(report)
    if counts is None:
        section.missing("GPU tests", f"pytest wrote no report: {done.stdout[-300:]}")
        return
    ran = counts["tests"] - counts["skipped"]
    bad = counts["failures"] + counts["errors"]
    section.details["pytest"] = (done.stdout.strip().splitlines() or [""])[-1]
    section.details["modules"] = ", ".join(modules)
    section.details["skipped"] = counts["skipped"]
    if counts["skipped"]:
        section.missing(
            f"{counts['skipped']} GPU test(s)", "skipped here (no CUDA device or no nvImageCodec)"
        )
    section.figure("tests passed (GPU test modules)", ran - bad, "tests")
    section.figure("tests failed (GPU test modules)", bad, "tests", 0, at_most=True)
    if bad:
        section.details["failed_output"] = done.stdout[-2000:]
    echo(f"  checks: {ran - bad} of {ran} tests passed, {counts['skipped']} skipped")


def _pythonpath() -> str:
    """The checkout and its tests first, then what this process was given (on a bare GPU
    machine, the folder the wheels were installed into)."""
    given = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join([str(ROOT), str(ROOT / "tests"), *given])


def _counts(report: Path) -> dict[str, int] | None:
    """tests / failures / errors / skipped of a pytest JUnit XML report (None: no report)."""
    if not report.is_file():
        return None
    root = ET.parse(report).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
