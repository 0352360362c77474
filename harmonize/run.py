"""A harmonization run: list the archive, skip what is done, process the rest, write the manifest.

The orchestration here is plain Python; the per-object work runs either in this process
(``executor="local"``, the sequential reference) or as a Ray Data stream
(``executor="ray"``, see ``harmonize.distributed.stream``). Both produce the same rows.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harmonize.errors import ConfigError, ModelError, StorageError
from harmonize.io.archive import DICOM_SUFFIXES, list_images
from harmonize.io.labels import read_labels, site_and_label
from harmonize.io.manifest import (
    STATUS_SKIPPED,
    ManifestWriter,
    done_objects,
    read_manifest,
    run_prefix,
)
from harmonize.io.storage import Storage
from harmonize.models.registry import LoadedModel, load_model
from harmonize.pipeline import RunSpec, new_row, process_object, relative_path

if TYPE_CHECKING:
    from harmonize.classifier import Classifier


@dataclass(frozen=True)
class RunOptions:
    """How to execute a run (none of this changes the output pixels)."""

    executor: str = "ray"  # "ray" | "local"
    ray_address: str | None = None
    # Harmonizer actor-pool size; None: one actor per GPU, or CPU tasks when there is no GPU.
    actors: int | None = None
    batch_size: int = 8  # images per Ray Data block and per harmonizer call
    suffixes: tuple[str, ...] = DICOM_SUFFIXES  # () = every object under the input prefix
    labels_uri: str | None = None
    run_id: str | None = None
    progress: bool = True
    limit: int | None = None  # process at most this many objects (smoke tests)
    # Ray Data's budget for blocks in flight (decoded pixels waiting for the harmonizer, ...):
    # bounds memory however large the archive; None lets Ray use its object store share.
    object_store_mib: int | None = 1024

    def __post_init__(self) -> None:
        if self.executor not in ("ray", "local"):
            raise ConfigError(f'executor must be "ray" or "local", got "{self.executor}"')
        if (self.actors is not None and self.actors < 1) or self.batch_size < 1:
            raise ConfigError("actors and batch_size must be >= 1")


@dataclass
class RunSummary:
    run_id: str
    manifest_uri: str
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        rate = self.counts.get("ok", 0) / self.seconds if self.seconds else 0.0
        return (
            f"run {self.run_id}: {self.total} objects ({parts}) in {self.seconds:.1f} s "
            f"({rate:.2f} images/s); manifest: {self.manifest_uri}"
        )


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def site_from_path(input_uri: str, uri: str) -> str | None:
    """The first folder below the input prefix (archives are laid out as <prefix>/<site>/...)."""
    rel = relative_path(input_uri, uri)
    return rel.split("/", 1)[0] if "/" in rel else None


def plan(
    spec: RunSpec, storage: Storage, options: RunOptions
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows to process, rows skipped as already done) for every listed input object."""
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
    done = done_objects(read_manifest(spec.out_uri, storage), spec.method, spec.config_hash)
    todo, skipped = [], []
    for obj in objects:
        row = new_row(spec, obj.uri, obj.etag, obj.size, site_from_path(spec.input_uri, obj.uri))
        if (obj.uri, obj.etag) in done:
            row.update(done[(obj.uri, obj.etag)])
            row["status"] = STATUS_SKIPPED
            row["processed_at"] = datetime.now(UTC)
            skipped.append(row)
        else:
            todo.append(row)
    return todo, skipped


def load_run_classifier(spec: RunSpec, storage: Storage) -> Classifier | None:
    """The run's classifier (None without one), checked to be the one the run planned with
    (a model rewritten under the same URI mid-run must not mix into one config_hash)."""
    if spec.classifier_uri is None:
        return None
    from harmonize.classifier import load_classifier

    classifier = load_classifier(spec.classifier_uri, storage)
    if classifier.model_hash != spec.classifier_hash:
        raise ModelError(
            f'the classifier at "{spec.classifier_uri}" changed during run {spec.run_id} '
            f"(hash {classifier.model_hash}, planned {spec.classifier_hash}); start a new run"
        )
    return classifier


def _local_rows(
    rows: list[dict[str, Any]],
    model: LoadedModel,
    classifier: Classifier | None,
    spec: RunSpec,
    storage: Storage,
) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield process_object(row, model.harmonizer, spec, storage, classifier)


def _with_labels(
    rows: Iterable[dict[str, Any]], labels: dict[str, tuple[str | None, int | None]]
) -> Iterator[dict[str, Any]]:
    for row in rows:
        hit = labels.get(row.get("image_id") or "")
        if hit is not None:
            site, label = hit
            row["site"] = site or row.get("site")
            row["label"] = label
        yield row


def run_harmonization(
    *,
    input_uri: str,
    out_uri: str,
    method: str,
    model_uri: str,
    mode: str = "direct",
    classifier_uri: str | None = None,
    storage: Storage | None = None,
    options: RunOptions | None = None,
) -> RunSummary:
    """Harmonize every object under ``input_uri`` with the model at ``model_uri``.

    Writes derived DICOM under ``OUT/images/`` and one manifest row per listed object under
    ``OUT/manifest/run=<run_id>/``. With ``classifier_uri`` (``harmonize train classifier``),
    every row also gets the classifier's score of the original (``score_in``) and of the
    harmonized image (``score_out``). Objects already ``ok`` for the same method, model, mode and
    classifier are skipped (and recorded as ``skipped``).
    """
    store = storage or Storage()
    opts = options or RunOptions()
    model = load_model(model_uri, store, expected_method=method, mode=mode)
    classifier = None
    if classifier_uri is not None:
        from harmonize.classifier import load_classifier

        classifier = load_classifier(classifier_uri, store)
    spec = RunSpec(
        input_uri=store.normalize(input_uri),
        out_uri=store.normalize(out_uri),
        method=method,
        model_uri=model_uri,
        model_hash=model.model_hash,
        run_id=opts.run_id or new_run_id(),
        mode=mode,
        classifier_uri=classifier_uri,
        classifier_hash=classifier.model_hash if classifier is not None else None,
    )
    labels = site_and_label(read_labels(opts.labels_uri, store)) if opts.labels_uri else {}
    start = time.perf_counter()
    todo, skipped = plan(spec, store, opts)
    writer = ManifestWriter(spec.out_uri, spec.run_id, store)
    summary = RunSummary(spec.run_id, run_prefix(spec.out_uri, spec.run_id))
    writer.add(_with_labels(skipped, labels))
    summary.counts.update(r["status"] for r in skipped)
    if todo:
        if opts.executor == "ray":
            from harmonize.distributed.stream import stream_rows

            produced = stream_rows(todo, spec, store, opts)
        else:
            produced = _local_rows(todo, model, classifier, spec, store)
        bar = _progress(len(todo), opts.progress)
        for row in _with_labels(produced, labels):
            writer.add([row])
            summary.counts[row["status"]] += 1
            bar.update(1)
        bar.close()
    writer.close()
    summary.seconds = time.perf_counter() - start
    expected = len(todo) + len(skipped)
    if summary.total != expected:  # count in = count out, or the run is not trustworthy
        raise StorageError(
            f"run {spec.run_id} produced {summary.total} rows for {expected} objects"
        )
    return summary


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="harmonize", disable=not enabled, leave=False)
