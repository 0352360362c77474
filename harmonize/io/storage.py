"""One URI scheme for local folders, s3:// prefixes and DICOMweb PACS: list, read and
whole-object write.

A URI is a local path (``/data/archive``, ``./out``), ``s3://bucket/prefix`` or a DICOMweb URI
(``dicomweb+http://host:port/dicom-web?StudyDate=...``: ``harmonize.io.dicomweb``, where a read
is a WADO-RS retrieve, a write a STOW-RS store and a listing a QIDO-RS search). S3 access goes
through pyarrow's S3 filesystem (reads and writes) and boto3 (listing, which also returns each
object's ETag); ``endpoint_url`` points both at any S3-compatible server (MinIO, SeaweedFS, ...).

Example::

    store = Storage(endpoint_url="http://127.0.0.1:8333")
    for obj in store.list("s3://archive/site-a", suffixes=(".dcm",)):
        data = store.read(obj.uri)
    store.write("s3://results/run-1/x.dcm", data)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.fs as pafs

from harmonize.errors import StorageError
from harmonize.io import dicomweb
from harmonize.io.retry import DEFAULT_RETRY_SECONDS, with_retries

T = TypeVar("T")


@dataclass(frozen=True)
class ObjectInfo:
    """One object found by a listing: its URI, size in bytes and version tag.

    ``etag`` is the S3 ETag for s3:// objects, ``"<size>-<mtime_ns>"`` for local files and the
    SOP Instance UID for DICOMweb instances: it changes whenever the object is rewritten, so
    (uri, etag) identifies one version of one object.
    """

    uri: str
    size: int
    etag: str


def _read_umask() -> int:
    """This process's umask (read by setting it and putting it back: there is no getter; done
    once, at import, before any thread could create a file in between)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
#: The name ending of a local write in progress (``.<name>.<random><suffix>`` beside the
#: target until it is renamed into place); listings leave such files out, and only those:
#: hidden files (``.x.dcm``) are listed like any other object.
TEMPORARY_SUFFIX = ".harmonize-tmp"
_LIST_HINT = (
    ". Check the bucket name, credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the "
    "endpoint (AWS_ENDPOINT_URL)"
)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(base: str, *parts: str) -> str:
    """Join URI parts with ``/`` (local paths are joined the same way)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f'S3 URI "{uri}" has no bucket; write it as s3://bucket/prefix')
    return bucket, key


@dataclass(frozen=True)
class Storage:
    """Access to local folders and S3-compatible object storage through one interface.

    Every operation retries transient failures (the storage unreachable, slow or overloaded)
    with back-off for up to ``retry_seconds`` in all (``harmonize.io.retry``), then raises a
    ``StorageError`` whose ``transient`` says so.

    Args:
        endpoint_url: S3 endpoint (``http://host:port``); ``None`` uses AWS's default endpoint.
        region: S3 region; most S3-compatible servers accept the default.
        retry_seconds: how long one operation may wait out transient failures (0: no retry).
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"
    retry_seconds: float = DEFAULT_RETRY_SECONDS

    def __getstate__(self) -> dict[str, Any]:
        # Clients are rebuilt lazily in each process; a boto3 client cannot be pickled.
        return {
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "retry_seconds": self.retry_seconds,
        }

    # -- filesystems ---------------------------------------------------------------------------
    @cached_property
    def _pacs(self) -> dict[str, dicomweb.DicomWebArchive]:
        return {}  # DICOMweb clients by service root, built in the process that uses them

    def _on_pacs(
        self,
        uri: str,
        what: str,
        operation: Callable[[dicomweb.DicomWebArchive, dicomweb.Location], T],
    ) -> T:
        """``operation`` on the PACS and location of the DICOMweb ``uri``, within the retry
        budget (the client is built first, outside it: missing credentials fail at once)."""
        location = dicomweb.parse(uri)
        if location.root not in self._pacs:
            pacs = dicomweb.DicomWebArchive(location.root)
            pacs.client  # noqa: B018 - built here, not retried
            self._pacs[location.root] = pacs
        pacs = self._pacs[location.root]
        return with_retries(
            lambda: operation(pacs, location), what, uri, budget=self.retry_seconds,
            hint=dicomweb.HINT,
        )  # fmt: skip

    @cached_property
    def _s3fs(self) -> pafs.S3FileSystem:
        kwargs: dict[str, Any] = {"region": self.region}
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            kwargs["endpoint_override"] = host or scheme
            kwargs["scheme"] = scheme if host else "https"
        return pafs.S3FileSystem(**kwargs)

    @cached_property
    def _boto3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)

    def filesystem(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and in-filesystem path for ``uri`` (for pyarrow/Ray readers)."""
        if dicomweb.is_dicomweb(uri):
            raise StorageError(
                f'"{uri}" is a PACS (DICOMweb), which holds DICOM instances only; write tables, '
                "models and reports to a folder or an s3:// prefix"
            )
        if is_s3(uri):
            bucket, key = _split_s3(uri)
            return self._s3fs, f"{bucket}/{key}".rstrip("/")
        return pafs.LocalFileSystem(), self.normalize(uri)

    @staticmethod
    def normalize(uri: str) -> str:
        """The canonical form of a URI: s3:// as given without a trailing slash, local paths
        absolute, DICOMweb without a trailing slash before its query. Listings return canonical
        URIs, so compare and join canonical forms."""
        if dicomweb.is_dicomweb(uri):
            return dicomweb.normalize(uri)
        if is_s3(uri):
            return uri.rstrip("/")
        return os.path.abspath(os.path.expanduser(uri))

    # -- operations ----------------------------------------------------------------------------
    def list(self, uri: str, suffixes: tuple[str, ...] = ()) -> list[ObjectInfo]:
        """Every object under ``uri`` (recursively) whose name ends with one of ``suffixes``
        (case-insensitive; all objects when empty), sorted by URI. A DICOMweb URI lists the
        instances its QIDO-RS filters match (every instance is DICOM: no suffix applies).

        Raises:
            StorageError: the prefix does not exist or cannot be listed.
        """
        if dicomweb.is_dicomweb(uri):
            uris = self._on_pacs(uri, "list", dicomweb.DicomWebArchive.list)
            return [ObjectInfo(u, 0, dicomweb.etag_of(u)) for u in sorted(uris)]
        suffixes = tuple(s.lower() for s in suffixes)
        if is_s3(uri):
            found = with_retries(
                lambda: list(self._list_s3(uri)), "list", uri, budget=self.retry_seconds,
                hint=_LIST_HINT,
            )  # fmt: skip
        else:
            found = list(self._list_local(uri))
        out = [o for o in found if not suffixes or o.uri.lower().endswith(suffixes)]
        return sorted(out, key=lambda o: o.uri)

    def _list_local(self, uri: str) -> Iterator[ObjectInfo]:
        root = Path(self.normalize(uri))
        if root.is_file():
            st = root.stat()
            yield ObjectInfo(str(root), st.st_size, f"{st.st_size}-{st.st_mtime_ns}")
            return
        if not root.is_dir():
            raise StorageError(f'"{uri}" is not an existing folder or file; check the path')
        for dirpath, _, files in os.walk(root):
            for name in files:
                if name.endswith(TEMPORARY_SUFFIX):
                    continue  # an atomic write in progress (or one a killed process left)
                p = Path(dirpath) / name
                st = p.stat()
                yield ObjectInfo(str(p), st.st_size, f"{st.st_size}-{st.st_mtime_ns}")

    def _list_s3(self, uri: str) -> Iterator[ObjectInfo]:
        bucket, key = _split_s3(uri)
        prefix = key.rstrip("/") + "/" if key and not key.endswith("/") else key
        pages = self._boto3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    f"s3://{bucket}/{item['Key']}", int(item["Size"]), item["ETag"].strip('"')
                )

    def read(self, uri: str) -> bytes:
        """The whole content of one object (a DICOMweb instance: as a Part-10 file)."""
        if dicomweb.is_dicomweb(uri):
            return self._on_pacs(uri, "read", dicomweb.DicomWebArchive.read)
        fs, path = self.filesystem(uri)

        def read() -> bytes:
            with fs.open_input_stream(path) as f:
                return bytes(f.read())

        return with_retries(read, "read", uri, budget=self.retry_seconds)

    def exists(self, uri: str) -> bool:
        if dicomweb.is_dicomweb(uri):
            return self._on_pacs(uri, "check", dicomweb.DicomWebArchive.exists)
        fs, path = self.filesystem(uri)
        return with_retries(
            lambda: bool(fs.get_file_info(path).type != pafs.FileType.NotFound),
            "check", uri, budget=self.retry_seconds,
        )  # fmt: skip

    def write(self, uri: str, data: bytes) -> None:
        """Write ``data`` as one whole object: readers see the old object or the new one, never
        a partial write (local: temporary file + rename; S3: a single PUT or completed upload;
        DICOMweb: one STOW-RS store of the Part-10 file whose UIDs the instance URI names)."""
        if dicomweb.is_dicomweb(uri):
            self._on_pacs(uri, "store", lambda pacs, location: pacs.store(location, data))
            return
        if is_s3(uri):
            fs, path = self.filesystem(uri)

            def put() -> None:
                with fs.open_output_stream(path) as f:
                    f.write(data)

            with_retries(put, "write", uri, budget=self.retry_seconds)
            return
        target = Path(uri).expanduser()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX, dir=target.parent
            )
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            # mkstemp makes 0600 files; an output gets the permissions any new file would get.
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, target)
        except OSError as err:
            raise StorageError(f'cannot write "{uri}": {err}') from err

    def write_text(self, uri: str, text: str) -> None:
        self.write(uri, text.encode("utf-8"))

    def read_text(self, uri: str) -> str:
        return self.read(uri).decode("utf-8")
