"""DICOMweb as a storage scheme, against a real Orthanc: QIDO-RS listing with filters (paged),
WADO-RS reads, STOW-RS writes, credentials from the environment, transient failures retried."""

from __future__ import annotations

import io
import logging
import pickle
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests

from harmonize.errors import ConfigError, StorageError
from harmonize.io import dicomweb
from harmonize.io.retry import is_transient
from harmonize.io.storage import Storage
from harmonize.run.plan import site_from_path
from harmonize.run.spec import relative_path

from conftest import SOURCE, TARGET
from s3server import free_ports

pytestmark = pytest.mark.timeout(120)


def _upload_archive(pacs, archive: Path) -> dict[str, pydicom.Dataset]:
    """Both sites' images into the PACS; their headers by instance URI."""
    found = {}
    for path in sorted([*(archive / SOURCE).glob("*.dcm"), *(archive / TARGET).glob("*.dcm")]):
        pacs.upload(path.read_bytes())
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uri = dicomweb.parse(pacs.root).uri(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        )
        found[uri] = ds
    return found


def test_parse_takes_a_uri_apart() -> None:
    location = dicomweb.parse(
        "dicomweb+https://pacs:8042/dicom-web/studies/1.2/series/1.2.3?StationName=A&StudyDate=2026-"
    )
    assert location.root == "https://pacs:8042/dicom-web"
    assert (location.study, location.series, location.sop) == ("1.2", "1.2.3", None)
    assert location.filters == {"StationName": "A", "StudyDate": "2026-"}
    assert location.level_filters(dicomweb.SERIES_KEYS) == {"StationName": "A"}
    assert location.level_filters(None) == {"StudyDate": "2026-"}
    assert (
        location.uri("1", "2", "3")
        == "dicomweb+https://pacs:8042/dicom-web/studies/1/series/2/instances/3"
    )
    assert dicomweb.etag_of(location.uri("1", "2", "3.4")) == "3.4"


def test_bad_uris_are_refused_in_one_sentence() -> None:
    with pytest.raises(StorageError, match="must not carry credentials.*HARMONIZE_DICOMWEB_USER"):
        dicomweb.parse("dicomweb+http://me:secret@pacs/dicom-web")
    with pytest.raises(StorageError, match='filters by "Statoin", which is not a DICOM keyword'):
        dicomweb.parse("dicomweb+http://pacs/dicom-web?Statoin=A")
    with pytest.raises(StorageError, match="not a DICOMweb URI"):
        dicomweb.parse("http://pacs/dicom-web")


def test_since_days_filters_by_study_date() -> None:
    day = date(2026, 3, 10)
    assert (
        dicomweb.with_study_date_since("dicomweb+http://p/dw?Modality=CR", 2, day)
        == "dicomweb+http://p/dw?Modality=CR&StudyDate=20260308-"
    )
    assert dicomweb.with_study_date_since("dicomweb+http://p/dw", 0, day).endswith(
        "/dw?StudyDate=20260310-"
    )
    with pytest.raises(ConfigError, match="already filters by StudyDate"):
        dicomweb.with_study_date_since("dicomweb+http://p/dw?StudyDate=2020-", 1, day)
    with pytest.raises(ConfigError, match="since_days needs a DICOMweb archive"):
        dicomweb.with_study_date_since("s3://bucket/in", 1, day)


def test_paths_under_a_filtered_root_name_the_instance() -> None:
    root = "dicomweb+http://p/dw?StudyDate=2026-"
    uri = "dicomweb+http://p/dw/studies/1/series/2/instances/3"
    assert relative_path(root, uri) == "studies/1/series/2/instances/3"
    assert site_from_path(root, uri) is None  # no site folder in a PACS: the labels name it


def test_http_failures_are_classified() -> None:
    def http_error(status: int) -> requests.HTTPError:
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(f"{status} error", response=response)

    assert [is_transient(http_error(s)) for s in (500, 503, 429, 408)] == [True] * 4
    assert [is_transient(http_error(s)) for s in (400, 401, 403, 404)] == [False] * 4
    assert is_transient(requests.ConnectionError("refused"))
    assert is_transient(requests.ReadTimeout("slow"))
    assert not is_transient(requests.exceptions.SSLError("bad certificate"))


def test_an_unreachable_pacs_is_transient_after_the_budget() -> None:
    (port,) = free_ports(1, low=30000, high=31999)
    store = Storage(retry_seconds=0.5)
    with pytest.raises(StorageError, match="stayed unreachable for 0.5 s") as err:
        store.list(f"dicomweb+http://127.0.0.1:{port}/dicom-web")
    assert err.value.transient


def test_listing_with_filters_is_exact(pacs, archive, monkeypatch) -> None:
    uploaded = _upload_archive(pacs, archive)
    store = Storage()
    every = store.list(pacs.root)
    assert [o.uri for o in every] == sorted(uploaded)
    assert all(o.etag == uploaded[o.uri].SOPInstanceUID and o.size == 0 for o in every)

    station = next(iter(uploaded.values())).StationName
    at_station = {u for u, ds in uploaded.items() if ds.StationName == station}
    assert 0 < len(at_station) < len(uploaded)
    assert {o.uri for o in store.list(f"{pacs.root}?StationName={station}")} == at_station

    dates = sorted({ds.StudyDate for ds in uploaded.values()})
    since = dates[len(dates) // 2]
    recent = {u for u, ds in uploaded.items() if ds.StudyDate >= since}
    assert 0 < len(recent) < len(uploaded)
    query = f"{pacs.root}?ModalitiesInStudy=CR&StudyDate={since}-"
    assert {o.uri for o in store.list(query)} == recent
    assert store.list(f"{pacs.root}?ModalitiesInStudy=MR") == []

    one = next(iter(uploaded))
    study_uri = one.split("/series/")[0]
    in_study = {u for u in uploaded if u.startswith(study_uri + "/")}
    assert {o.uri for o in store.list(study_uri)} == in_study
    assert [o.uri for o in store.list(one)] == [one]

    monkeypatch.setattr(dicomweb, "PAGE_SIZE", 3)  # paged: the same answer, 3 at a time
    assert [o.uri for o in Storage().list(pacs.root)] == sorted(uploaded)


def test_read_returns_the_stored_instance(pacs, archive) -> None:
    path = sorted((archive / SOURCE).glob("*.dcm"))[0]
    pacs.upload(path.read_bytes())
    (obj,) = Storage().list(pacs.root)
    got = pydicom.dcmread(io.BytesIO(Storage().read(obj.uri)))
    want = pydicom.dcmread(path)
    assert got.SOPInstanceUID == want.SOPInstanceUID == obj.etag
    assert got.file_meta.TransferSyntaxUID == want.file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(got.pixel_array, want.pixel_array)
    assert Storage().exists(obj.uri)
    missing = obj.uri.rsplit("/", 1)[0] + "/1.2.3.4"
    assert not Storage().exists(missing)
    with pytest.raises(StorageError, match="404") as err:
        Storage().read(missing)
    assert not err.value.transient


def test_write_stores_by_stow_and_reads_back(pacs, archive) -> None:
    ds = pydicom.dcmread(sorted((archive / SOURCE).glob("*.dcm"))[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    uri = dicomweb.instance_uri_of(pacs.root + "?StationName=ignored", buffer.getvalue())
    assert uri == dicomweb.parse(pacs.root).uri(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    store = Storage()
    store.write(uri, buffer.getvalue())
    store.write(uri, buffer.getvalue())  # a retried store is harmless: same UIDs, one instance
    assert [o.uri for o in store.list(pacs.root)] == [uri]
    back = pydicom.dcmread(io.BytesIO(store.read(uri)))
    np.testing.assert_array_equal(back.pixel_array, ds.pixel_array)
    wrong = uri.rsplit("/", 1)[0] + "/1.2.3"
    with pytest.raises(StorageError, match="its UIDs differ from the URI's"):
        store.write(wrong, buffer.getvalue())
    with pytest.raises(StorageError, match="holds DICOM instances only"):
        store.filesystem(pacs.root)


def test_credentials_come_from_the_environment_and_never_show(
    pacs, archive, monkeypatch, caplog
) -> None:
    pacs.upload(sorted((archive / SOURCE).glob("*.dcm"))[0].read_bytes())
    caplog.set_level(logging.DEBUG)
    store = Storage(retry_seconds=0)
    (obj,) = store.list(pacs.root)
    store.read(obj.uri)
    # Storage goes to Ray workers pickled: no credentials inside, the client is rebuilt there.
    shipped = pickle.dumps(store)
    assert pacs.password.encode() not in shipped
    assert [o.uri for o in pickle.loads(shipped).list(pacs.root)] == [obj.uri]

    monkeypatch.setenv("HARMONIZE_DICOMWEB_PASSWORD", "not-" + pacs.password)
    with pytest.raises(StorageError, match="401.*HARMONIZE_DICOMWEB_PASSWORD") as err:
        Storage(retry_seconds=5).list(pacs.root)  # refused at once: not transient
    assert not err.value.transient
    monkeypatch.delenv("HARMONIZE_DICOMWEB_PASSWORD")
    with pytest.raises(ConfigError, match="set both HARMONIZE_DICOMWEB_USER and"):
        Storage().list(pacs.root)
    assert pacs.password not in caplog.text and pacs.password not in str(err.value)


def test_a_run_refuses_a_pacs_as_out_and_a_folder_as_store() -> None:
    from harmonize.run.spec import RunSpec

    spec = {"input_uri": "/in", "method": "histogram", "model_uri": "/m", "model_hash": "h"}
    with pytest.raises(ConfigError, match="is a PACS, which cannot hold the manifest"):
        RunSpec(**spec, out_uri="dicomweb+http://p/dw", run_id="r")
    with pytest.raises(ConfigError, match="--store-derived .* is not a DICOMweb root"):
        RunSpec(**spec, out_uri="/out", run_id="r", store_uri="/elsewhere")
    stored = RunSpec(**spec, out_uri="/out", run_id="r", store_uri="dicomweb+http://p/dw")
    assert stored.pixels_hash == RunSpec(**spec, out_uri="/out", run_id="r").pixels_hash
