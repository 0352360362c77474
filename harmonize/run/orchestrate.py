"""A harmonization run: list the archive, skip what is done, process the rest, write the manifest.

The orchestration here is plain Python and chooses no executor: the caller (the command line, a
job) passes one, ``harmonize.run.local.LocalExecutor`` (one process, the sequential reference)
or the Ray Data stream of ``harmonize.distributed``. Both produce the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol, Self

from harmonize.dicom.deidentify import pseudonymous_uid
from harmonize.io.manifest import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_SKIPPED,
    ManifestWriter,
    run_prefix,
)
from harmonize.io.storage import Storage
from harmonize.io.summaries import listing_digest, write_summary
from harmonize.run.plan import new_run_id, plan, read_run_labels, with_labels
from harmonize.run.spec import RunIncomplete, RunOptions, RunSpec, RunSummary
from harmonize.run.stages import load_models


class Executor(Protocol):
    """Runs the per-object stages over the rows a run plans to process.

    ``rows`` yields one finished manifest row per row given, in any order; a bad object becomes
    its row's error, never an exception. ``rows`` starts what it needs (a Ray session); a
    ``with`` block around several runs holds it and stops, on exit, only what it started.
    """

    name: str  # how a run's log line names it: "local", "ray"

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def rows(
        self, todo: list[dict[str, Any]], spec: RunSpec, storage: Storage
    ) -> Iterator[dict[str, Any]]: ...


ExecutorFactory = Callable[[str], Executor]  # "ray" | "local" -> an executor (the edge's choice)


def run_harmonization(
    *,
    input_uri: str,
    out_uri: str,
    method: str,
    model_uri: str,
    executor: Executor,
    mode: str = "direct",
    classifier_uri: str | None = None,
    storage: Storage | None = None,
    options: RunOptions | None = None,
) -> RunSummary:
    """Harmonize every object under ``input_uri`` with the model at ``model_uri``.

    Writes derived DICOM under ``OUT/images/``, one manifest row per processed object under
    ``OUT/manifest/run=<run_id>/`` (committed in parts as the run goes) and, when it finishes,
    the run's summary under ``OUT/summaries/run=<run_id>/`` (listed, skipped, ok, error counts
    and the listing's digest). With ``classifier_uri`` (``harmonize train classifier``),
    every row also gets the classifier's score of the original (``score_in``) and of the
    harmonized image (``score_out``). Objects already ``ok`` for the same method, model, mode and
    classifier are skipped (counted in the summary, no row each). ``executor`` runs the stages.

    Raises:
        HarmonizeError: bad input found before any row is written (model, classifier, labels,
            an empty input prefix).
        RunIncomplete: the run began writing rows and could not finish.
    """
    store = storage or Storage()
    opts = options or RunOptions()
    spec = _spec(input_uri, out_uri, method, model_uri, mode, classifier_uri, store, opts)
    labels, truths = read_run_labels(opts.labels_uri, store)
    if spec.deidentify is not None:  # rows carry pseudonymous image ids: so do the labels
        labels |= {pseudonymous_uid(k, spec.deidentify): v for k, v in labels.items()}
    start, started_at = time.perf_counter(), datetime.now(UTC)
    todo, skipped = plan(spec, store, opts, truths)
    summary = RunSummary(spec.run_id, run_prefix(spec.out_uri, spec.run_id))
    if skipped:  # counted in the run's summary, no row each
        summary.counts[STATUS_SKIPPED] = len(skipped)
    writer = ManifestWriter(
        spec.out_uri, spec.run_id, store, part_rows=opts.part_rows, part_seconds=opts.part_seconds
    )
    bar = _progress(len(todo), opts.progress and bool(todo))
    try:
        processed = _counted(executor.rows(todo, spec, store), bar) if todo else iter(())
        for row in with_labels(processed, labels):
            writer.add([row])
            summary.counts[row["status"]] += 1
            summary.transient += bool(row.get("transient"))
        writer.close()
    except Exception as err:  # the rows written so far stay; say what stopped the rest
        reason = (str(err).splitlines() or ["no message"])[0]
        raise RunIncomplete(
            f"run {spec.run_id} could not finish ({type(err).__name__}: {reason}); "
            f"{summary.manifest_uri} holds the {writer.rows_written} rows committed so far, "
            "and a re-run skips the objects already ok"
        ) from err
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    expected = len(todo) + len(skipped)
    if summary.total != expected:  # count in = count out, or the run is not trustworthy
        raise RunIncomplete(
            f"run {spec.run_id} produced {summary.total} rows for {expected} objects"
        )
    summary.listing_sha256 = listing_digest(
        [*((r["source_uri"], r["source_etag"]) for r in todo), *skipped]
    )
    summary.summary_uri = write_summary(
        spec.out_uri, _summary_record(spec, summary, started_at, expected), store
    )
    return summary


def _summary_record(
    spec: RunSpec, summary: RunSummary, started_at: datetime, listed: int
) -> dict[str, Any]:
    return {
        **{k: getattr(spec, k) for k in ("run_id", "method", "mode", "model_hash", "input_uri")},
        "config_hash": spec.config_hash,
        "code_version": spec.code_version,
        "started_at": started_at,
        "finished_at": datetime.now(UTC),
        "seconds": summary.seconds,
        "listed": listed,
        **{status: summary.counts[status] for status in (STATUS_SKIPPED, STATUS_OK, STATUS_ERROR)},
        "transient": summary.transient,
        "listing_sha256": summary.listing_sha256,
    }


def _spec(
    input_uri: str,
    out_uri: str,
    method: str,
    model_uri: str,
    mode: str,
    classifier_uri: str | None,
    storage: Storage,
    options: RunOptions,
) -> RunSpec:
    """The run's spec, from its model and classifier loaded once here (which checks that the
    model holds ``method`` and has ``mode``); the executors load their own."""
    model, classifier = load_models(
        model_uri, storage, method=method, mode=mode, classifier_uri=classifier_uri
    )
    return RunSpec(
        input_uri=storage.normalize(input_uri),
        out_uri=storage.normalize(out_uri),
        method=method,
        model_uri=model_uri,
        model_hash=model.model_hash,
        run_id=options.run_id or new_run_id(),
        mode=mode,
        classifier_uri=classifier_uri,
        classifier_hash=classifier.model_hash if classifier is not None else None,
        max_pixels=options.max_pixels,
        store_uri=storage.normalize(options.store_derived) if options.store_derived else None,
        deidentify=options.deidentify,
    )


def _counted(rows: Iterator[dict[str, Any]], bar: Any) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield row
        bar.update(1)


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="harmonize", disable=not enabled, leave=False)
