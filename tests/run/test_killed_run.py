"""A `harmonize run` SIGKILLed mid-way and run again: the committed parts hold whole rows, at
most one part's finished work is redone, orphaned outputs are overwritten, and every image ends
``ok`` exactly once; a reused run id adds parts instead of overwriting them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harmonize.dicom.decode import decode_dicom
from harmonize.io.manifest import read_manifest

from conftest import SOURCE, run_archive

COPIES = 6  # 48 objects
PART_ROWS = 4


def _input(archive: Path, root: Path) -> Path:
    for copy in range(COPIES):
        for path in sorted((archive / SOURCE).glob("*.dcm")):
            target = root / SOURCE / f"{copy}-{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return root


@pytest.mark.timeout(300)
def test_a_killed_run_loses_at_most_one_part_and_the_rerun_completes_it(
    archive, histogram_model, tmp_path
) -> None:
    inp, out = _input(archive, tmp_path / "in"), tmp_path / "out"
    total = 8 * COPIES
    command = [
        sys.executable, "-m", "harmonize.cli", "run", "--method", "histogram",
        "--model", histogram_model, "--input", str(inp), "--out", str(out),
        "--executor", "local", "--part-rows", str(PART_ROWS), "--run-id", "night-1",
        "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = out / "manifest" / "run=night-1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("*.parquet"))) >= 2:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""

    committed = read_manifest(str(out)).to_pandas()
    written = {p for p in (out / "images").rglob("*.dcm")}
    assert (committed.status == "ok").all() and len(committed) % PART_ROWS == 0
    assert PART_ROWS * 2 <= len(committed) < total  # killed mid-way, whole parts only
    assert set(committed.out_uri) <= {str(p) for p in written}
    orphans = len(written) - len(committed)  # finished, but no committed row covers them
    assert 0 <= orphans <= PART_ROWS

    # The same run id again: its parts are added beside the killed run's, never over them.
    again = run_archive(
        archive, histogram_model, out, input_uri=str(inp), labels_uri=None, run_id="night-1"
    )
    assert again.counts == {"skipped": len(committed), "ok": total - len(committed)}
    rows = read_manifest(str(out)).to_pandas()
    ok = rows[rows.status == "ok"]
    assert len(ok) == total and ok.source_uri.is_unique  # each image ok exactly once
    assert set(committed.out_uri) <= set(ok.out_uri)
    for uri in ok.out_uri:  # orphans were overwritten by whole, readable images
        assert decode_dicom(Path(uri).read_bytes()).pixels.shape == (256, 256)
