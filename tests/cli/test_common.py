"""The shared parameter types: local paths made absolute once (``~`` expanded, s3:// as given),
packaged config names resolved, comma-separated sizes checked."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from harmonize.cli.common import CONFIG, URI, LocalPath, PositiveInts, absolute
from harmonize.experiments.packaged import config_names, config_path


def test_a_local_path_is_made_absolute_and_a_uri_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert URI.convert("models/cyclegan", None, None) == str(tmp_path / "models" / "cyclegan")
    assert URI.convert("./a/../b", None, None) == str(tmp_path / "b")
    assert URI.convert("~/data", None, None) == str(tmp_path / "home" / "data")
    assert URI.convert("/abs/x", None, None) == "/abs/x"
    for uri in ("s3://bucket/prefix/", "s3://bucket", "http://host/dicomweb"):
        assert URI.convert(uri, None, None) == uri == absolute(uri)


def test_local_path_checks_the_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    existing = LocalPath(exists=True, file_okay=False)
    assert existing.convert("folder", None, None) == str(tmp_path / "folder")
    with pytest.raises(click.BadParameter, match="is a file"):
        existing.convert("file", None, None)
    with pytest.raises(click.BadParameter, match="does not exist"):
        existing.convert("missing", None, None)


def test_config_takes_a_packaged_name_a_path_or_a_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in config_names():
        assert CONFIG.convert(name, None, None) == config_path(name)
        assert os.path.isfile(CONFIG.convert(name, None, None))
    assert CONFIG.convert("train.yaml", None, None) == str(tmp_path / "train.yaml")  # read later
    assert CONFIG.convert("s3://cfg/train.yaml", None, None) == "s3://cfg/train.yaml"
    with pytest.raises(click.BadParameter, match="neither a packaged config .*cyclegan-cpu-quick"):
        CONFIG.convert("cyclegan-cpu-quik", None, None)


def test_positive_ints() -> None:
    sizes = PositiveInts()
    assert sizes.convert("512,1024, 2048", None, None) == (512, 1024, 2048)
    assert sizes.convert((64,), None, None) == (64,)
    for bad in ("512,abc", "512,0", "-1", "", "512,,1024", "1.5"):
        with pytest.raises(click.BadParameter, match="positive integers"):
            sizes.convert(bad, None, None)
