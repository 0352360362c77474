"""Storage on local folders and on a real S3 server (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import pickle

import pytest

from harmonize.errors import StorageError
from harmonize.io.storage import Storage, join


def test_join_and_normalize(tmp_path) -> None:
    assert join("s3://b/p/", "x", "/y.dcm") == "s3://b/p/x/y.dcm"
    assert Storage.normalize("s3://b/p/") == "s3://b/p"
    assert Storage.normalize(str(tmp_path / "a" / ".." / "b")) == str(tmp_path / "b")


def test_local_write_list_read(tmp_path) -> None:
    store = Storage()
    store.write(str(tmp_path / "a" / "1.dcm"), b"one")
    store.write(str(tmp_path / "a" / "sub" / "2.DCM"), b"two!")
    store.write(str(tmp_path / "a" / "labels.csv"), b"x")
    listed = store.list(str(tmp_path / "a"), suffixes=(".dcm",))
    assert [o.uri for o in listed] == [str(tmp_path / "a" / "1.dcm"), str(tmp_path / "a/sub/2.DCM")]
    assert [o.size for o in listed] == [3, 4]
    assert len(store.list(str(tmp_path / "a"))) == 3
    assert store.read(listed[1].uri) == b"two!"
    # A rewrite changes the version tag; no temporary files are left behind.
    before = listed[0].etag
    store.write(listed[0].uri, b"one, rewritten")
    assert store.list(str(tmp_path / "a"), suffixes=(".dcm",))[0].etag != before
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_local_errors_name_the_path(tmp_path) -> None:
    store = Storage()
    with pytest.raises(StorageError, match="not an existing folder"):
        store.list(str(tmp_path / "missing"))
    with pytest.raises(StorageError, match="cannot read"):
        store.read(str(tmp_path / "missing.dcm"))


def test_storage_pickles_without_clients() -> None:
    store = Storage(endpoint_url="http://127.0.0.1:1")
    _ = store._boto3  # a live boto3 client cannot be pickled; Storage must still be
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store and "_boto3" not in clone.__dict__


@pytest.mark.slow
def test_s3_round_trip_on_seaweedfs(s3_server) -> None:
    bucket = s3_server.create_bucket("storage-test")
    store = Storage(endpoint_url=s3_server.endpoint_url)
    store.write(f"{bucket}/p/a.dcm", b"alpha")
    store.write(f"{bucket}/p/q/b.dcm", b"beta" * 1000)
    store.write(f"{bucket}/other/c.dcm", b"gamma")
    listed = store.list(f"{bucket}/p", suffixes=(".dcm",))
    assert [o.uri for o in listed] == [f"{bucket}/p/a.dcm", f"{bucket}/p/q/b.dcm"]
    assert [o.size for o in listed] == [5, 4000]
    assert all(len(o.etag) >= 32 for o in listed)  # real S3 ETags
    assert store.read(f"{bucket}/p/q/b.dcm") == b"beta" * 1000
    assert store.exists(f"{bucket}/p/a.dcm") and not store.exists(f"{bucket}/p/zzz.dcm")
    with pytest.raises(StorageError, match="cannot list"):
        store.list("s3://no-such-bucket-here/x")


def test_local_writes_follow_the_umask(tmp_path) -> None:
    """Outputs get the permissions any new file gets (mkstemp alone would make them 0600)."""
    import os
    import subprocess
    import sys

    for mask in (0o027, 0o077):
        out = tmp_path / f"out-{mask:o}.bin"
        code = (
            f"import os; os.umask({mask}); from harmonize.io.storage import Storage; "
            f"Storage().write({str(out)!r}, b'x')"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert os.stat(out).st_mode & 0o777 == 0o666 & ~mask
