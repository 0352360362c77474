"""jobs/train.py's options: local paths made absolute before they travel to Ray Train
workers (s3:// left alone), --config a path or a packaged config's name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _dry_run(*args: str, cwd: Path) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "train.py"), *args, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_relative_paths_are_made_absolute_and_packaged_configs_found(tmp_path: Path) -> None:
    resolved = _dry_run(
        "--source", "data/mc", "--target", "s3://pacs/sz", "--out", "models/cyclegan",
        "--config", "cyclegan-cpu-quick", cwd=tmp_path,
    )  # fmt: skip
    assert resolved["source"] == str(tmp_path / "data" / "mc")
    assert resolved["target"] == "s3://pacs/sz"
    assert resolved["out"] == str(tmp_path / "models" / "cyclegan")
    assert resolved["gpus"] == 0 and resolved["workers"] is None
    assert resolved["training"]["crop_size"] == 128  # the packaged CPU-sized config
    published = _dry_run("--source", "a", "--target", "b", "--out", "c", cwd=tmp_path)
    assert published["training"]["crop_size"] == 256  # default: jobs/configs/cyclegan.yaml
