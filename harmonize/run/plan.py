"""Planning a run: list the input objects, skip those already done, start one row per object,
and join the labels table into finished rows."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from harmonize.errors import ConfigError
from harmonize.io.archive import list_images
from harmonize.io.dicomweb import is_dicomweb
from harmonize.io.labels import read_labels, site_and_label, table_uri
from harmonize.io.manifest import (
    STATUS_OK,
    done_objects,
    empty_row,
    read_manifest,
)
from harmonize.io.storage import Storage, join
from harmonize.run.spec import RunOptions, RunSpec, relative_path

Labels = dict[str, tuple[str | None, int | None]]  # image_id -> (site, label)
Truths = dict[str, str]  # source URI -> the URI of its truth image

# The manifest columns every row of a run copies from its spec.
SPEC_COLUMNS = (
    "method",
    "mode",
    "model_uri",
    "model_hash",
    "config_hash",
    "classifier_uri",
    "classifier_hash",
    "code_version",
    "run_id",
)


def new_run_id() -> str:
    """UTC time and a random tail, e.g. ``20250101T020000Z-1a2b3c`` (sorts by start time)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def site_from_path(input_uri: str, uri: str) -> str | None:
    """The first folder below the input prefix (archives are laid out as <prefix>/<site>/...);
    none for a PACS (DICOMweb), whose paths are studies/<uid>/... (the labels table names it)."""
    if is_dicomweb(uri):
        return None
    rel = relative_path(input_uri, uri)
    return rel.split("/", 1)[0] if "/" in rel else None


def new_row(
    spec: RunSpec, source_uri: str, etag: str, size: int, site: str | None
) -> dict[str, Any]:
    """The row one object starts the stages with: the run's columns (method, model, hashes,
    run id, ...) and the object's, status ``ok`` until a stage fails."""
    row = empty_row()
    values = spec.as_dict()
    row.update({key: values[key] for key in SPEC_COLUMNS})
    row.update(source_uri=source_uri, source_etag=etag, source_bytes=size, site=site)
    row["status"] = STATUS_OK
    return row


def plan(
    spec: RunSpec, storage: Storage, options: RunOptions, truths: Truths | None = None
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(rows to process, (URI, ETag) of the objects skipped as already done) for every listed
    input object; a row whose object has a truth image in ``truths`` carries its ``truth_uri``.
    A skipped object gets no row (the run's summary counts it), so a night over an unchanged
    archive of a million objects holds a million pairs, not a million rows."""
    out_prefix = spec.out_uri + "/"
    objects = [  # OUT may sit inside INPUT
        o
        for o in list_images(
            spec.input_uri,
            storage,
            what="input objects",
            suffixes=options.suffixes,
            hint=", or pass --suffix '' to take every object",
        )
        if not o.uri.startswith(out_prefix)
    ][: options.limit]
    if not objects:
        raise ConfigError(f'no input objects under "{spec.input_uri}" apart from the output')
    keys = ("source_uri", "source_etag", "status", "method", "config_hash")
    manifest = read_manifest(spec.out_uri, storage, columns=keys)
    done = done_objects(manifest, spec.method, spec.config_hash)
    todo, skipped = [], []
    for obj in objects:
        if (obj.uri, obj.etag) in done:
            skipped.append((obj.uri, obj.etag))
            continue
        row = new_row(spec, obj.uri, obj.etag, obj.size, site_from_path(spec.input_uri, obj.uri))
        row["truth_uri"] = (truths or {}).get(obj.uri)
        todo.append(row)
    return todo, skipped


def read_run_labels(labels_uri: str | None, storage: Storage) -> tuple[Labels, Truths]:
    """The labels table at ``labels_uri`` by image id, and the truth image of each object that
    has one (``path`` and ``truth_path`` are relative to the table's folder); empty without a
    table."""
    if not labels_uri:
        return {}, {}
    table = read_labels(labels_uri, storage)
    root = storage.normalize(table_uri(labels_uri)).rsplit("/", 1)[0]  # the table's folder
    linked = table[table["path"].notna() & table["truth_path"].notna()]
    linked = linked[linked["path"] != linked["truth_path"]]  # an image is not its own test
    truths = {
        join(root, str(path)): join(root, str(truth))
        for path, truth in zip(linked["path"], linked["truth_path"], strict=True)
    }
    return site_and_label(table), truths


def with_labels(rows: Iterable[dict[str, Any]], labels: Labels) -> Iterator[dict[str, Any]]:
    """Each row with its labels table entry joined in (site and label; rows not in the table
    pass unchanged)."""
    for row in rows:
        hit = labels.get(row.get("image_id") or "")
        if hit is not None:
            site, label = hit
            row["site"] = site or row.get("site")
            row["label"] = label
        yield row
