"""A user's two archives split into the experiment's train/ and test/ archives: by a hash of
image_id, every image once, labels and truth carried over, unreadable objects left out and
named."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harmonize.errors import ConfigError
from harmonize.experiments.config import ExperimentConfig
from harmonize.experiments.split import site_names, split_archive, split_of
from harmonize.io.labels import read_labels
from harmonize.synth import synthesize_archive

from conftest import SOURCE, TARGET


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic two-site archive with the source's truth, as a user would bring it."""
    out = tmp_path_factory.mktemp("user") / "archive"
    synthesize_archive(
        str(out), [TARGET, SOURCE], 10, seed=3, matrix=64, progress=False, truth_site=TARGET
    )
    return out


def _user(source: Path | str, target: Path, labels: Path, **more: object) -> ExperimentConfig:
    """The experiment on a user's archives (``harmonize experiment --source ...``)."""
    return ExperimentConfig(
        source_uri=str(source), target_uri=str(target), labels_uri=str(labels), **more
    )


def test_split_of_is_the_hash_of_the_image_id() -> None:
    ids = [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(4000)]
    splits = [split_of(i, 0.4) for i in ids]
    assert splits == [split_of(i, 0.4) for i in ids]  # the same on every call
    for image_id, split in zip(ids[:50], splits, strict=False):
        share = int(hashlib.sha256(image_id.encode()).hexdigest()[:16], 16) / 2**64
        assert split == ("test" if share < 0.4 else "train")
    assert 0.37 < splits.count("test") / len(ids) < 0.43  # 4 sigma of a fair 0.4 coin
    assert {split_of(i, 0.05) for i in ids[:10]} <= {"train", "test"}


def test_site_names_are_the_folder_names_unless_they_clash() -> None:
    assert site_names("s3://b/montgomery/", "/data/shenzhen") == ("montgomery", "shenzhen")
    assert site_names("/a/images", "/b/images") == ("source", "target")


def test_every_image_lands_in_one_split_with_its_label_and_truth(
    archive: Path, tmp_path: Path
) -> None:
    original = read_labels(str(archive)).set_index("image_id")
    config = _user(archive / SOURCE, archive / TARGET, archive, test_fraction=0.5)
    split = split_archive(config, str(tmp_path / "out"))
    assert (split.source, split.target) == (SOURCE, TARGET)
    seen = []
    for name in ("train", "test"):
        table = read_labels(str(tmp_path / "out" / name))
        seen += list(table.image_id)
        for row in table.itertuples():
            assert split_of(row.image_id, 0.5) == name
            assert row.label == original.loc[row.image_id, "label"]
            assert row.site == original.loc[row.image_id, "site"]
            copied = tmp_path / "out" / name / row.path
            assert (
                copied.read_bytes() == (archive / original.loc[row.image_id, "path"]).read_bytes()
            )
            if row.site == SOURCE and name == "test":  # the truth travels with the test image
                want = archive / original.loc[row.image_id, "truth_path"]
                assert (tmp_path / "out" / name / row.truth_path).read_bytes() == want.read_bytes()
            else:
                assert pd.isna(row.truth_path)
    assert sorted(seen) == sorted(original.index)  # count in = count out, each image once
    assert sum(split.counts.values()) == 20 and split.unreadable == ()
    assert split.with_truth == split.counts.get(f"test {SOURCE}", 0) > 0


def test_truth_in_a_parallel_folder_and_unreadable_objects(archive: Path, tmp_path: Path) -> None:
    source, truth = tmp_path / "site-a", tmp_path / "truth"
    shutil.copytree(archive / SOURCE, source)
    (source / "broken.dcm").write_bytes(b"not a DICOM file")
    labels = read_labels(str(archive))
    by_path = dict(zip(labels.path, labels.truth_path, strict=True))
    truth.mkdir()
    for image in (archive / SOURCE).iterdir():  # the truth under the same names
        shutil.copy(archive / by_path[f"{SOURCE}/{image.name}"], truth / image.name)
    plain = tmp_path / "labels.csv"
    labels.drop(columns=["truth_path", "path"]).to_csv(plain, index=False)
    config = _user(source, archive / TARGET, plain, truth_uri=str(truth), test_fraction=0.5)
    split = split_archive(config, str(tmp_path / "out"))
    assert split.source == "site-a" and split.unreadable == (str(source / "broken.dcm"),)
    assert "left out 1 objects that are not DICOM images" in split.line()
    test = read_labels(str(tmp_path / "out" / "test"))
    linked = test[test.site == "site-a"]
    assert len(linked) and linked.truth_path.notna().all()
    for row in linked.itertuples():
        name = Path(row.path).name
        assert (tmp_path / "out" / "test" / row.truth_path).read_bytes() == (
            truth / name
        ).read_bytes()


def test_labels_that_match_no_image_are_refused(archive: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "labels.csv"
    pd.DataFrame({"image_id": ["1.2.3", "1.2.4"], "label": [0, 1]}).to_csv(wrong, index=False)
    with pytest.raises(ConfigError) as info:
        split_archive(_user(archive / SOURCE, archive / TARGET, wrong), str(tmp_path / "o"))
    message = str(info.value)
    assert "has a label" in message and "SOPInstanceUID" in message and "\n" not in message


def test_a_pacs_source_is_copied_as_dicom_files(pacs, archive: Path, tmp_path: Path) -> None:
    sources = sorted((archive / SOURCE).glob("*.dcm"))
    for path in sources:
        pacs.upload(path.read_bytes())
    config = _user(pacs.root, archive / TARGET, archive, test_fraction=0.5)
    split = split_archive(config, str(tmp_path / "out"))
    assert split.source == "dicom-web" and split.target == TARGET
    copied = sorted((tmp_path / "out").glob("*/dicom-web/studies/*/series/*/instances/*.dcm"))
    assert len(copied) == len(sources)  # every instance once, as a file the runs list
    assert sorted(p.read_bytes()[128:132] for p in copied) == [b"DICM"] * len(sources)
    ids = set()
    for name in ("train", "test"):
        table = read_labels(str(tmp_path / "out" / name))
        ids |= set(table[table.site == "dicom-web"].image_id)
    assert ids == {p.stem for p in copied}  # the instance's UID names its file
