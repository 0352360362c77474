"""Listing an archive: DICOM names of any case, sorted, limited; none found says what to check."""

from __future__ import annotations

import pytest

from harmonize.errors import ConfigError
from harmonize.io.archive import DICOM_SUFFIXES, list_images
from harmonize.io.storage import Storage


def test_lists_dicom_names_of_any_case_sorted_and_limited(tmp_path) -> None:
    for name in ("b.DCM", "a.dcm", "c.dicom", "notes.txt", "sub/d.Dicom"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [o.uri.rsplit("/", 1)[-1] for o in list_images(str(tmp_path), Storage())]
    assert found == ["a.dcm", "b.DCM", "c.dicom", "d.Dicom"]
    assert len(list_images(str(tmp_path), Storage(), limit=2)) == 2
    everything = list_images(str(tmp_path), Storage(), suffixes=())
    assert len(everything) == 5
    assert DICOM_SUFFIXES == (".dcm", ".dicom")


def test_an_empty_archive_names_what_was_looked_for(tmp_path) -> None:
    (tmp_path / "x.txt").write_bytes(b"x")
    with pytest.raises(ConfigError) as info:
        list_images(str(tmp_path), Storage(), what="target images", hint="; or pass --x")
    assert str(info.value) == (
        f"no target images under \"{tmp_path}\" ending with ['.dcm', '.dicom']; check the URI; "
        "or pass --x"
    )
