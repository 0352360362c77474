"""`harmonize synth`: --help names the built-in profiles (read cheaply, the same as the loaded
ones), relative paths land under the working folder, --from-png takes one site."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from harmonize.cli.synth import builtin_sites
from harmonize.synth import PROFILES, profile_to_yaml

from conftest import REAL_PNG_DIR, SOURCE, TARGET, run_cli


def test_help_lists_the_builtin_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert builtin_sites() == sorted(PROFILES)
    assert run_cli("synth", "--help") == 0
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    assert f"a built-in ({', '.join(sorted(PROFILES))})" in text
    assert f"[default: {TARGET}, {SOURCE}]" in text


def test_relative_paths_are_taken_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    profile = tmp_path / "profiles" / "my-site.yaml"
    profile.parent.mkdir()
    profile.write_text(profile_to_yaml(replace(PROFILES[SOURCE], name="my-site")))
    args = ["synth", "data/archive", "--site", TARGET, "--site", "profiles/my-site.yaml"]
    assert run_cli(*args, "--n-per-site", "2", "--matrix", "64", "--no-progress") == 0
    out = tmp_path / "data" / "archive"
    assert f"wrote 4 images to {out} " in capsys.readouterr().out
    labels = pd.read_parquet(out / "labels.parquet")
    assert sorted(labels.site.unique()) == ["my-site", TARGET]
    assert len(list((out / "my-site").rglob("*.dcm"))) == 2


def test_from_png_needs_exactly_one_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png_dir = REAL_PNG_DIR / "shenzhen"
    args = ["synth", str(tmp_path / "real"), "--from-png", str(png_dir), "--matrix", "64"]
    assert run_cli(*args, "--site", TARGET, "--site", SOURCE) == 2
    assert "--from-png needs exactly one --site" in capsys.readouterr().err
    assert run_cli(*args, "--site", TARGET) == 0
    assert (tmp_path / "real" / "labels.parquet").is_file()
