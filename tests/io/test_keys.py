"""Output keys stay inside the output prefix whatever an input object is called: the encoding
on a list of hostile names, and real runs over such objects on S3 (SeaweedFS) and local disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harmonize.io.keys import MAX_KEY, MAX_SEGMENT, safe_key
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage, join
from harmonize.run.spec import RunSpec

from conftest import SOURCE, run_archive

#: Names an S3 archive may hold (S3 accepts any UTF-8 key up to 1024 bytes).
HOSTILE = [
    "site/../../../../tmp/x.dcm",
    "../x.dcm",
    "..",
    ".",
    "./a.dcm",
    "a/./b.dcm",
    "/etc/passwd.dcm",
    "//double//slash.dcm",
    "a/b/",
    "back\\slash\\..\\..\\x.dcm",
    "C:\\Windows\\x.dcm",
    "ctl\x00nul\x01\x1f\x7f.dcm",
    "new\nline\r.dcm",
    "tab\there.dcm",
    "per%2E%2E/cent%2F.dcm",
    "~long/clash.dcm",
    "tilde~x.dcm",
    ".hidden.dcm",
    "._appledouble.dcm",
    "trailing-dot.",
    "trailing-space ",
    "é-ü-日本.dcm",
    "x" * 300 + ".dcm",
    "/".join(["deep"] * 200) + "/x.dcm",
    "y" * 1000,
    '*?<>|":.dcm',
]
ORDINARY = ["site-a/patient 1/img.dcm", "s/x_y+z=1,2@3(4)[5].dcm", "IMG0001.DCM"]


@pytest.mark.parametrize("name", HOSTILE + ORDINARY)
def test_every_key_is_relative_bounded_and_stays_under_the_prefix(name: str) -> None:
    key = safe_key(name)
    segments = key.split("/")
    assert key and not key.startswith("/")
    assert not {"", ".", ".."} & set(segments)
    assert not any(s.startswith(".") for s in segments)  # no hidden outputs
    assert all(ch.isprintable() and ch not in '\\:*?<>|"' for ch in key)
    assert len(key.encode()) <= MAX_KEY
    assert all(len(s.encode()) <= MAX_SEGMENT for s in segments)
    out = "/srv/out"
    assert os.path.normpath(join(out, key)).startswith(out + "/")


def test_ordinary_names_are_kept_and_hostile_ones_never_collide() -> None:
    assert [safe_key(n) for n in ORDINARY] == ORDINARY
    assert safe_key("site/../../tmp/x.dcm") == "site/%2E%2E/%2E%2E/tmp/x.dcm"
    assert safe_key(".hidden.dcm") == "%2Ehidden.dcm"
    names = HOSTILE + ORDINARY + ["site/%2E%2E/x.dcm", "%2F", "a//b", "a/%2F/b", "x" * 301]
    keys = [safe_key(n) for n in names]
    assert len(set(keys)) == len(set(names))
    long = safe_key("x" * 300 + ".dcm")
    assert long.endswith(".dcm") and long.startswith("x" * 100) and "~" in long


@pytest.mark.parametrize("out", ["/srv/out", "s3://results/out"])
def test_a_run_puts_every_listed_object_under_its_out_prefix(out: str) -> None:
    """What a listing of an AWS bucket can return (every key above) against the output path
    `harmonize run` derives from it."""
    spec = RunSpec("s3://archive/in", out, "histogram", "m", "abc", "run-1")
    images = join(out, "images", "histogram", spec.pixels_hash)
    derived = [spec.out_uri_for(f"s3://archive/in/{name}") for name in HOSTILE]
    for uri in derived:
        path = uri.removeprefix("s3:/") if out.startswith("s3://") else uri
        assert os.path.normpath(path).startswith(images.removeprefix("s3:/") + "/")
    assert len(set(derived)) == len(HOSTILE)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_hostile_s3_keys_make_outputs_inside_the_out_folder_only(
    s3_server, archive: Path, histogram_model: str, tmp_path: Path
) -> None:
    """An S3 archive whose keys hold ``..``, backslashes, control characters, dot-files and an
    over-long name, harmonized into a local folder and into S3: every object gets its row and
    its output, and every output lies under OUT."""
    store = Storage(endpoint_url=s3_server.endpoint_url)
    bucket = s3_server.create_bucket("hostile-keys")
    image = sorted((archive / SOURCE).glob("*.dcm"))[0].read_bytes()
    # SeaweedFS refuses keys with a '..' segment or a segment over 255 bytes, turns '\\' into
    # '/' and collapses '//' (AWS S3 keeps them all): those are checked through out_uri_for.
    names = [
        "site/ctl\x01\x1f.dcm",
        "site/.hidden.dcm",
        "site/%2E%2E.dcm",
        "site/..x.dcm",
        "site/é日本.dcm",
        "site/" + "q" * 240 + ".dcm",
        "site/ordinary.dcm",
    ]
    for name in names:
        s3_server.client.put_object(Bucket="hostile-keys", Key=f"in/{name}", Body=image)
    listed = store.list(join(bucket, "in"), suffixes=(".dcm",))
    assert len(listed) == len(names)  # the server kept every key as given

    sandbox = tmp_path / "sandbox"
    before = _files(tmp_path)
    for out in (str(sandbox / "out"), join(bucket, "out")):
        summary = run_archive(
            archive, histogram_model, out, input_uri=join(bucket, "in"), storage=store,
            labels_uri=None,
        )  # fmt: skip
        assert summary.counts == {"ok": len(names)}
        rows = read_manifest(out, store).to_pandas()
        if out.startswith("s3://"):
            written = {o.uri for o in store.list(join(out, "images"))}
        else:
            written = {str(p) for p in _files(sandbox / "out" / "images")}
        assert set(rows.out_uri) == written and len(written) == len(names)
        assert all(uri.startswith(join(out, "images") + "/") for uri in written)
    # Nothing written anywhere else on this disk's test folder.
    assert {p for p in _files(tmp_path) - before if sandbox / "out" not in p.parents} == set()
    assert not (tmp_path.parent / "x.dcm").exists() and not Path("/x.dcm").exists()


def test_hostile_local_names_are_listed_and_harmonized_inside_out(
    archive: Path, histogram_model: str, tmp_path: Path
) -> None:
    """Local names with backslashes, control characters, '%', a leading dot and 250 bytes are
    listed (dot-files too) and their outputs stay under OUT; only our own temporary files of
    an unfinished write are left out of a listing."""
    image = sorted((archive / SOURCE).glob("*.dcm"))[0].read_bytes()
    src = tmp_path / "in" / "site"
    src.mkdir(parents=True)
    names = ["a\\..\\b.dcm", "ctl\x01.dcm", "%2E%2E.dcm", ".hidden.dcm", "w" * 246 + ".dcm"]
    for name in names:
        (src / name).write_bytes(image)
    (src / ".x.dcm.abc123.harmonize-tmp").write_bytes(b"partial")
    out = tmp_path / "out"
    summary = run_archive(
        archive, histogram_model, out, input_uri=str(tmp_path / "in"), labels_uri=None
    )
    assert summary.counts == {"ok": len(names)}
    written = _files(out / "images")
    assert len(written) == len(names)
    assert all(not p.name.startswith(".") for p in written)
