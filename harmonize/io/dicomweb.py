"""A PACS as an archive: DICOMweb URIs, and listing (QIDO-RS), reading (WADO-RS) and storing
(STOW-RS) DICOM instances through `dicomweb-client` (MIT).

A DICOMweb URI is the service root with ``dicomweb+`` before its scheme, optionally narrowed to
one study or series and filtered by QIDO-RS matching keys in its query string::

    dicomweb+http://127.0.0.1:8042/dicom-web
    dicomweb+https://pacs.example.org/dicom-web?ModalitiesInStudy=CR&StudyDate=20260101-20261231
    dicomweb+http://pacs:8042/dicom-web/studies/1.2.3/series/1.2.3.4?StationName=CR-ROOM-2

Each listed object is one instance, named by its URL
(``.../studies/<study>/series/<series>/instances/<sop>``); its size is 0 (QIDO-RS does not
report one) and its etag its SOP Instance UID: DICOM forbids changing an instance without giving
it a new UID, so the UID names one version of the content. A listing queries studies (with the
study-level filters), then each study's series (series-level filters: ``SERIES_KEYS``), then each
series' instances (``INSTANCE_KEYS``), each query paged (``limit``/``offset``) so that a large
PACS never answers in one giant response; harmonize's own derived series are left out
(``DERIVED_SERIES``). Filter keys must be DICOM keywords or 8-digit tags: a
typo would otherwise be ignored by the server and list the whole PACS.

Credentials come from the environment of each process that builds a client, never from a URI,
a spec or a manifest: ``HARMONIZE_DICOMWEB_TOKEN`` (bearer) or ``HARMONIZE_DICOMWEB_USER`` +
``HARMONIZE_DICOMWEB_PASSWORD`` (basic). Retries are the storage layer's (``harmonize.io.retry``):
the client's own are off.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from harmonize.errors import ConfigError, StorageError

PREFIXES = ("dicomweb+http://", "dicomweb+https://")
#: Matching keys sent with the series query (Orthanc's series-level main tags and the DICOM
#: General Series / Equipment attributes); ``INSTANCE_KEYS`` with the instance query; every other
#: key with the study query.
SERIES_KEYS = frozenset(
    {
        "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime",
        "SeriesDescription", "StationName", "BodyPartExamined", "ProtocolName", "Manufacturer",
        "OperatorsName", "PerformedProcedureStepStartDate",
    }
)  # fmt: skip
INSTANCE_KEYS = frozenset({"SOPInstanceUID", "SOPClassUID", "InstanceNumber"})
#: Results per QIDO-RS request.
PAGE_SIZE = 500
#: How the series of harmonize's derived images begin their SeriesDescription
#: (``harmonize.dicom.encode`` writes "Harmonized (<method>)"): a listing leaves them out, so
#: derived images stored back into the input PACS are never taken as inputs.
DERIVED_SERIES = "Harmonized ("
#: (connect, read) seconds of one HTTP request; a timeout is transient (retried).
TIMEOUT = (10.0, 120.0)
ENV_USER, ENV_PASSWORD, ENV_TOKEN = (
    "HARMONIZE_DICOMWEB_USER",
    "HARMONIZE_DICOMWEB_PASSWORD",
    "HARMONIZE_DICOMWEB_TOKEN",
)
#: What to check after a DICOMweb operation failed for good.
HINT = (
    f". Check the URI and the PACS credentials ({ENV_USER}/{ENV_PASSWORD} or {ENV_TOKEN} in the "
    "environment)"
)
_PATH = re.compile(
    r"^(?P<root>.*?)(?:/studies/(?P<study>[^/]+)"
    r"(?:/series/(?P<series>[^/]+)(?:/instances/(?P<sop>[^/]+))?)?)?/?$"
)


def is_dicomweb(uri: str) -> bool:
    return uri.startswith(PREFIXES)


@dataclass(frozen=True)
class Location:
    """A DICOMweb URI taken apart: the service root (plain http(s) URL), the study, series and
    instance it names (if any) and its QIDO-RS filters."""

    root: str
    study: str | None = None
    series: str | None = None
    sop: str | None = None
    filters: dict[str, str] = field(default_factory=dict)

    def uri(self, study: str, series: str, sop: str) -> str:
        """The ``dicomweb+`` URI of one instance under this root."""
        return f"dicomweb+{self.root}/studies/{study}/series/{series}/instances/{sop}"

    def level_filters(self, keys: frozenset[str] | None) -> dict[str, str]:
        """The filters sent at one level: those in ``keys``, or (None) the study level's."""
        every = SERIES_KEYS | INSTANCE_KEYS
        return {
            k: v
            for k, v in self.filters.items()
            if (k in keys if keys is not None else k not in every)
        }


def parse(uri: str) -> Location:
    """The parts of a DICOMweb URI.

    Raises:
        StorageError: the URI is not a DICOMweb URI, carries credentials, or filters by
            something that is not a DICOM attribute.
    """
    if not is_dicomweb(uri):
        raise StorageError(f'"{uri}" is not a DICOMweb URI; write it as dicomweb+http(s)://...')
    parts = urlsplit(uri.removeprefix("dicomweb+"))
    if parts.username or parts.password:
        raise StorageError(
            f"a DICOMweb URI must not carry credentials; set {ENV_USER} and {ENV_PASSWORD} "
            f"(or {ENV_TOKEN}) in the environment instead"
        )
    if not parts.hostname:
        raise StorageError(f'DICOMweb URI "{uri}" has no host; write dicomweb+http://HOST/ROOT')
    match = _PATH.match(parts.path)
    assert match is not None  # every path matches (all groups optional)
    filters = dict(parse_qsl(parts.query, keep_blank_values=True))
    for key in filters:
        _check_key(uri, key)
    return Location(
        root=f"{parts.scheme}://{parts.netloc}{match['root']}",
        study=match["study"],
        series=match["series"],
        sop=match["sop"],
        filters=filters,
    )


def _check_key(uri: str, key: str) -> None:
    from pydicom.datadict import tag_for_keyword

    if re.fullmatch(r"[0-9A-Fa-f]{8}", key) or tag_for_keyword(key) is not None:
        return
    raise StorageError(
        f'DICOMweb URI "{uri}" filters by "{key}", which is not a DICOM keyword or tag; use '
        "QIDO-RS matching keys such as ModalitiesInStudy, StudyDate or StationName"
    )


def normalize(uri: str) -> str:
    """The canonical form: no trailing slash on the path, the query as given."""
    base, sep, query = uri.partition("?")
    return base.rstrip("/") + sep + query


def strip_query(uri: str) -> str:
    return uri.partition("?")[0].rstrip("/")


def etag_of(instance_uri: str) -> str:
    """The etag of a listed instance: its SOP Instance UID (see the module's docstring)."""
    return strip_query(instance_uri).rsplit("/", 1)[-1]


def with_study_date_since(uri: str, days: int, today: date | None = None) -> str:
    """``uri`` filtered to studies of the last ``days`` days (``StudyDate=<today - days>-``):
    what a nightly job lists; the manifest's skip index skips what is done already.

    Raises:
        ConfigError: ``uri`` is not a DICOMweb URI, or it already filters by StudyDate.
    """
    if not is_dicomweb(uri):
        raise ConfigError(
            f'since_days needs a DICOMweb archive (dicomweb+http://...), got "{uri}"; remove '
            "since_days (the manifest's skip index already skips what is done)"
        )
    location = parse(uri)
    if "StudyDate" in location.filters:
        raise ConfigError(
            f'the archive "{uri}" already filters by StudyDate; remove that filter or since_days'
        )
    since = (today or date.today()) - timedelta(days=days)
    sep = "&" if "?" in uri else "?"
    return f"{uri}{sep}{urlencode({'StudyDate': f'{since:%Y%m%d}-'})}"


def instance_uids(data: bytes) -> tuple[str, str, str]:
    """The study, series and SOP Instance UIDs of the Part-10 file ``data``."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def instance_uri_of(root_uri: str, data: bytes) -> str:
    """The URI under the DICOMweb root ``root_uri`` that the Part-10 file ``data`` gets when
    stored there (its study, series and SOP Instance UIDs)."""
    return parse(strip_query(root_uri)).uri(*instance_uids(data))


def _session() -> Any:
    """A requests session with the environment's credentials (never logged)."""
    import requests

    session = requests.Session()
    token = os.environ.get(ENV_TOKEN)
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user or password:
        if not (user and password):
            raise ConfigError(f"set both {ENV_USER} and {ENV_PASSWORD} (basic auth), or neither")
        session.auth = (user, password)
    return session


def _first(item: dict[str, Any], tag: str) -> str:
    """The first value of attribute ``tag`` (8 hex digits) in a DICOM JSON result, as text."""
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _derived(series: dict[str, Any]) -> bool:
    """Whether a series result is one of harmonize's derived series."""
    return _first(series, "0008103E").startswith(DERIVED_SERIES)


class DicomWebArchive:
    """One DICOMweb service root: the client is built on first use, in the process using it."""

    def __init__(self, root: str) -> None:
        self.root = root  # the plain http(s) URL of the service root
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from dicomweb_client.api import DICOMwebClient

            client = DICOMwebClient(url=self.root, session=_session(), timeout=TIMEOUT)
            client.set_http_retry_params(retry=False)  # with_retries holds the budget
            self._client = client
        return self._client

    def _pages(self, search: Any, filters: dict[str, str], **uids: str) -> Iterator[dict]:
        """Every result of one QIDO-RS query, a page at a time (until an empty page: a server
        may cap a page below the limit asked for)."""
        offset = 0
        while True:
            page = search(**uids, search_filters=dict(filters), limit=PAGE_SIZE, offset=offset)
            if not page:
                return
            yield from page
            offset += len(page)

    def list(self, location: Location) -> list[str]:
        """The URIs of the instances ``location`` names (after its filters)."""
        client = self.client
        if location.sop is not None:
            assert location.study is not None and location.series is not None
            exists = self.exists(location)
            return [location.uri(location.study, location.series, location.sop)] if exists else []
        if location.study is not None:
            studies = [location.study]
        else:
            filters = location.level_filters(None)
            results = self._pages(client.search_for_studies, filters)
            studies = [_first(s, "0020000D") for s in results]
        out: list[str] = []
        for study in studies:
            if location.series is not None:
                series_uids = [location.series]
            else:
                filters = location.level_filters(SERIES_KEYS)
                if location.study is not None:  # the study's own filters apply to its series
                    filters |= location.level_filters(None)
                found = self._pages(client.search_for_series, filters, study_instance_uid=study)
                series_uids = [_first(s, "0020000E") for s in found if not _derived(s)]
            for series in series_uids:
                instances = self._pages(
                    client.search_for_instances,
                    location.level_filters(INSTANCE_KEYS),
                    study_instance_uid=study,
                    series_instance_uid=series,
                )
                out.extend(location.uri(study, series, _first(i, "00080018")) for i in instances)
        return out

    def read(self, location: Location) -> bytes:
        """The instance as a Part-10 file, in the transfer syntax the PACS stores it in."""
        import pydicom

        study, series, sop = _instance(location)
        any_syntax = (("application/dicom", "*"),)
        ds = self.client.retrieve_instance(study, series, sop, media_types=any_syntax)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()

    def exists(self, location: Location) -> bool:
        study, series, sop = _instance(location)
        found = self.client.search_for_instances(
            study_instance_uid=study,
            series_instance_uid=series,
            search_filters={"SOPInstanceUID": sop},
            limit=1,
        )
        return bool(found)

    def store(self, location: Location, data: bytes) -> None:
        """STOW-RS of one Part-10 file whose UIDs are those ``location`` names.

        Raises:
            StorageError: the UIDs differ, or the PACS refused the instance.
        """
        import pydicom

        study, series, sop = _instance(location)
        ds = pydicom.dcmread(io.BytesIO(data))
        if (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) != (study, series, sop):
            raise StorageError(
                f"the instance {ds.SOPInstanceUID} of study {ds.StudyInstanceUID} cannot be "
                f"stored as {location.uri(study, series, sop)}: its UIDs differ from the URI's"
            )
        response = self.client.store_instances([ds])
        failed = getattr(response, "FailedSOPSequence", None)
        if failed:
            reasons = ", ".join(str(getattr(item, "FailureReason", "?")) for item in failed)
            raise StorageError(
                f"the PACS refused instance {sop} (STOW-RS failure reason {reasons}); check "
                "that it accepts this SOP class and the user may store"
            )


def _instance(location: Location) -> tuple[str, str, str]:
    if location.study is None or location.series is None or location.sop is None:
        raise StorageError(
            f'"dicomweb+{location.root}" names no instance; write '
            ".../studies/<study>/series/<series>/instances/<sop>"
        )
    return location.study, location.series, location.sop
