"""The per-object stages of a harmonization run, as plain functions (no Ray), and the one way
their model and classifier are loaded.

A run takes batches of listed objects through ``read_and_decode_batch`` (one decode call per
batch: a GPU decodes its compressed frames at once) → ``harmonize_and_measure_batch`` (harmonize,
classify original and harmonized when a classifier is given, SSIM, histograms and QA flags
(``run/qa.py``); SSIM and PSNR against the truth image when the labels table links one) →
``encode_and_write`` and ends with one manifest row per object. Every stage catches its own
failures: an object that cannot be read, decoded, harmonized or written becomes a row with
``status="error"`` and the reason, and later stages pass it through untouched, so count in =
count out.

Between stages a row is a dict of manifest columns plus transient payload keys (``PAYLOAD``):
display pixels travel as raw float32 bytes (cheap to move through Ray's object store) and the
source header as Part-10 bytes without pixel data; a row read but not decoded yet
(``undecoded``) carries the object's own bytes.

``harmonize.run.local`` chains the stages in one process; the Ray Data executor runs the same
functions as a stream. Both load what the stages run with through ``load_checked``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from skimage.metrics import peak_signal_noise_ratio

from harmonize.dicom.decode import DecodedImage, decode_dicom_batch
from harmonize.dicom.deidentify import pseudonymous_uid
from harmonize.dicom.encode import encode_derived
from harmonize.dicom.header import header_from_bytes, header_to_bytes
from harmonize.errors import DicomError, HarmonizeError, ModelError, StorageError
from harmonize.io.dicomweb import instance_uri_of
from harmonize.io.manifest import STATUS_ERROR, STATUS_OK
from harmonize.io.storage import Storage
from harmonize.methods.base import Harmonizer
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram
from harmonize.metrics.ssim import SSIM_OPTIONS, smallest_side, ssim
from harmonize.models.registry import LoadedModel, load_model
from harmonize.run.qa import qa_flags
from harmonize.run.spec import RunSpec

if TYPE_CHECKING:
    from harmonize.classifier.model import Classifier

PAYLOAD = ("pixels", "out_pixels", "header", "truth_pixels")
logger = logging.getLogger(__name__)
SSIM_SIDE = smallest_side(**SSIM_OPTIONS)  # smaller images get no SSIM (and a note why)


class Scorer(Protocol):
    """What the score stage needs from a classifier (``classifier.model.Classifier``)."""

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def load_models(
    model_uri: str, storage: Storage, *, method: str, mode: str, classifier_uri: str | None
) -> tuple[LoadedModel, Classifier | None]:
    """The model (checked to hold ``method`` and to have ``mode``) and, when asked for, the
    classifier of a run, read from their URIs."""
    model = load_model(model_uri, storage, expected_method=method, mode=mode)
    if classifier_uri is None:
        return model, None
    from harmonize.classifier.model import load_classifier

    return model, load_classifier(classifier_uri, storage)


def load_checked(spec: RunSpec, storage: Storage) -> tuple[Harmonizer, Scorer | None]:
    """The run's harmonizer (and classifier), checked to be the ones the run planned with (a
    model rewritten under the same URI mid-run must not mix into one config_hash)."""
    model, classifier = load_models(
        spec.model_uri,
        storage,
        method=spec.method,
        mode=spec.mode,
        classifier_uri=spec.classifier_uri,
    )
    checks: list[tuple[str, str | None, str, str | None]] = [
        ("model", spec.model_uri, model.model_hash, spec.model_hash)
    ]
    if classifier is not None:
        checks.append(
            ("classifier", spec.classifier_uri, classifier.model_hash, spec.classifier_hash)
        )
    for what, uri, found, planned in checks:
        if found != planned:
            raise ModelError(
                f'the {what} at "{uri}" changed during run {spec.run_id} '
                f"(hash {found}, planned {planned}); start a new run"
            )
    return model.harmonizer, classifier


MAX_REASON = 600  # characters of an error row's reason


def failure_reason(stage: str, err: BaseException) -> str:
    """One line for the manifest's ``error`` column: the stage and what was wrong. harmonize's
    own errors already say what to do; anything else is named by its type, as unexpected (its
    traceback goes to the log, never to the manifest)."""
    if isinstance(err, HarmonizeError):
        text = str(err)
    else:
        text = f"{type(err).__name__}: {err} (unexpected: the traceback is in the worker's log)"
    text = " ".join(text.split())
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 1] + "…"
    return f"{stage}: {text}"


def mark_failed(row: dict[str, Any], stage: str, err: BaseException) -> dict[str, Any]:
    """Turn ``row`` into an error row (its reason: ``failure_reason``); no payload. A row that
    failed before keeps its first error."""
    if row.get("status") == STATUS_OK:
        row["status"] = STATUS_ERROR
        row["error"] = failure_reason(stage, err)
        row["transient"] = isinstance(err, StorageError) and err.transient
        row["qa_flags"] = None  # an error row has no QA: its error says what went wrong
    for key in PAYLOAD:
        row[key] = None
    return row


def _stage(name: str, seconds_key: str) -> Callable[[Callable[..., None]], Callable[..., dict]]:
    """Run a stage on one row: skip rows that already failed, time it, turn exceptions into an
    error row (never raise: one bad object must not stop a run)."""

    def wrap(fn: Callable[..., None]) -> Callable[..., dict]:
        def run(row: dict[str, Any], *args: Any) -> dict[str, Any]:
            if row.get("status") != STATUS_OK:
                return row
            start = time.perf_counter()
            try:
                fn(row, *args)
            except Exception as err:  # noqa: BLE001 - every failure becomes an error row
                first = row.get("status") == STATUS_OK
                mark_failed(row, name, err)
                if first and not isinstance(err, HarmonizeError):
                    logger.warning("%s of %s failed", name, row.get("source_uri"), exc_info=True)
            row[seconds_key] = (row.get(seconds_key) or 0.0) + time.perf_counter() - start
            return row

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run

    return wrap


@_stage("read", "read_s")
def _read(row: dict[str, Any], storage: Storage) -> None:
    row["pixels"] = storage.read(row["source_uri"])  # raw object bytes until decoded
    row["truth_pixels"] = storage.read(row["truth_uri"]) if row.get("truth_uri") else b""


def _objects(row: dict[str, Any]) -> list[bytes]:
    """The objects a read row decodes: its image and, when it has one, its truth image."""
    return [row["pixels"], row["truth_pixels"]] if row.get("truth_pixels") else [row["pixels"]]


def _fill(
    row: dict[str, Any], image: DecodedImage | DicomError, truth: DecodedImage | DicomError | None
) -> None:
    """Fill ``row`` from its decoded image (and truth image): metadata, display pixels, header;
    a decode error of either fails the row (the image's first)."""
    if isinstance(image, DicomError):
        raise image
    meta = image.meta
    row.update(
        image_id=meta.sop_instance_uid,
        rows=meta.rows,
        cols=meta.cols,
        bits_stored=meta.bits_stored,
        photometric=meta.photometric,
        transfer_syntax=meta.transfer_syntax_uid,
        decoder=image.decoder,  # "cpu" or "nvimgcodec" (a GPU: dicom/gpu_decode.py)
        pixels=np.ascontiguousarray(image.pixels, dtype=np.float32).tobytes(),
        header=header_to_bytes(image.header),
    )
    if truth is not None:
        if isinstance(truth, DicomError):
            raise truth
        if truth.pixels.shape != image.pixels.shape:
            rows, cols = truth.pixels.shape
            raise ValueError(
                f"the truth image {row['truth_uri']} is {rows}x{cols}, the image "
                f"{meta.rows}x{meta.cols}: a truth must be pixel-aligned with its image"
            )
        row["truth_pixels"] = np.ascontiguousarray(truth.pixels, dtype=np.float32).tobytes()


_take_decoded = _stage("decode", "decode_s")(_fill)


@_stage("decode", "decode_s")
def _decode_alone(row: dict[str, Any], max_pixels: int) -> None:
    """Decode one row's objects on their own (when a batch failed unexpectedly)."""
    image, *truth = decode_dicom_batch(_objects(row), max_pixels=max_pixels)
    _fill(row, image, truth[0] if truth else None)


def undecoded(row: dict[str, Any]) -> bool:
    """Whether ``row`` was read but not decoded yet (ok, no ``decoder``): its ``pixels`` and
    ``truth_pixels`` still hold the objects' bytes."""
    return row.get("status") == STATUS_OK and row.get("decoder") is None


def read_objects(rows: list[dict[str, Any]], storage: Storage) -> list[dict[str, Any]]:
    """Read each row's object (and truth object) into its payload (a failed read: its error)."""
    return [_read(row, storage) for row in rows]


def decode_objects(rows: list[dict[str, Any]], spec: RunSpec) -> list[dict[str, Any]]:
    """Decode the objects of every read row (image and truth image) in ONE
    `decode_dicom_batch` call (so the GPU, where there is one, decodes the batch's compressed
    frames at once); each object's error fails its row only. The manifest's ``image_id`` is
    de-identified here when the run asks for it (every row passed, exactly once).

    Each row's ``decode_s`` is the batch's decode time split evenly over its rows, plus the
    time to fill the row; rows that failed before are passed through untouched."""
    ok = [row for row in rows if row.get("status") == STATUS_OK]
    objects = [_objects(row) for row in ok]
    start = time.perf_counter()
    try:
        entries = iter(
            decode_dicom_batch([o for both in objects for o in both], max_pixels=spec.max_pixels)
        )
    except Exception:  # noqa: BLE001 - unexpected (not bad input): find the row at fault
        logger.warning("a decode batch failed; decoding its rows one by one", exc_info=True)
        for row in ok:
            _decode_alone(row, spec.max_pixels)
    else:
        share = (time.perf_counter() - start) / max(len(ok), 1)
        for row, both in zip(ok, objects, strict=True):
            image, truth = next(entries), (next(entries) if len(both) == 2 else None)
            _take_decoded(row, image, truth)
            row["decode_s"] = (row.get("decode_s") or 0.0) + share
    if spec.deidentify is not None:  # the manifest holds pseudonyms
        for row in rows:
            if row.get("image_id"):
                row["image_id"] = pseudonymous_uid(row["image_id"], spec.deidentify)
    return rows


def read_and_decode_batch(
    rows: list[dict[str, Any]], spec: RunSpec, storage: Storage
) -> list[dict[str, Any]]:
    """Stage 1 on a batch: each object's bytes read, then all decoded in one batch
    (`decode_objects`) → display pixels + header + image metadata per row."""
    return decode_objects(read_objects(rows, storage), spec)


def pixels_of(row: dict[str, Any], key: str = "pixels") -> np.ndarray:
    return np.frombuffer(row[key], dtype=np.float32).reshape(int(row["rows"]), int(row["cols"]))


@_stage("harmonize", "harmonize_s")
def _harmonize(row: dict[str, Any], harmonizer: Harmonizer) -> None:
    out = harmonizer.transform(pixels_of(row))
    row["out_pixels"] = np.ascontiguousarray(out, dtype=np.float32).tobytes()


@_stage("metrics", "metrics_s")
def _measure(row: dict[str, Any], target_histogram: np.ndarray | None = None) -> None:
    before, after = pixels_of(row), pixels_of(row, "out_pixels")
    truth = pixels_of(row, "truth_pixels") if row.get("truth_pixels") else None
    fits = min(before.shape) >= SSIM_SIDE
    if fits:
        row["ssim"] = float(ssim(before, after, **SSIM_OPTIONS))
    else:  # harmonized and written all the same
        row["notes"] = (
            f"ssim: the image is {before.shape[0]}x{before.shape[1]} pixels, smaller than "
            f"SSIM's {SSIM_SIDE}-pixel window: SSIM left empty"
        )
    row["hist_in"] = intensity_histogram(before, bins=HIST_BINS).astype(np.float32).tolist()
    row["hist_out"] = intensity_histogram(after, bins=HIST_BINS).astype(np.float32).tolist()
    if truth is not None:
        row["ssim_truth"] = float(ssim(truth, after, **SSIM_OPTIONS)) if fits else None
        row["psnr_truth"] = float(peak_signal_noise_ratio(truth, after, data_range=1.0))
    row["qa_flags"] = qa_flags(
        before,
        after,
        ssim=row.get("ssim"),
        score_in=row.get("score_in"),
        score_out=row.get("score_out"),
        hist_in=row["hist_in"],
        hist_out=row["hist_out"],
        target_histogram=target_histogram,
    )
    row["pixels"] = row["truth_pixels"] = None  # only the harmonized pixels go on to the encoder


@_stage("score", "score_s")
def _score(row: dict[str, Any], classifier: Scorer) -> None:
    score_in, score_out = classifier.score([pixels_of(row), pixels_of(row, "out_pixels")])
    row["score_in"], row["score_out"] = float(score_in), float(score_out)


def _score_batch(rows: list[dict[str, Any]], classifier: Scorer) -> None:
    """Score the original and the harmonized image of every ok row in one classifier call;
    if that call fails, score row by row so that only the rows at fault become errors."""
    ok = [r for r in rows if r.get("status") == STATUS_OK]
    if not ok:
        return
    start = time.perf_counter()
    try:
        images = [im for r in ok for im in (pixels_of(r), pixels_of(r, "out_pixels"))]
        scores = np.asarray(classifier.score(images), dtype=np.float64).reshape(len(ok), 2)
    except Exception:  # noqa: BLE001 - find the row at fault, one at a time
        for row in ok:
            _score(row, classifier)
        return
    seconds = (time.perf_counter() - start) / len(ok)
    for row, (score_in, score_out) in zip(ok, scores, strict=True):
        row["score_in"], row["score_out"] = float(score_in), float(score_out)
        row["score_s"] = seconds


def harmonize_and_measure_batch(
    rows: list[dict[str, Any]], harmonizer: Harmonizer, classifier: Scorer | None = None
) -> list[dict[str, Any]]:
    """Stage 2 on a batch: each row harmonized, the batch scored in one classifier call, each
    row measured. One bad row becomes an error row; the others go on."""
    rows = [_harmonize(row, harmonizer) for row in rows]
    if classifier is not None:
        _score_batch(rows, classifier)
    return [_measure(row, harmonizer.target_histogram) for row in rows]


@_stage("encode", "encode_s")
def _encode(row: dict[str, Any], spec: RunSpec) -> None:
    header = header_from_bytes(row["header"])
    row["header"] = encode_derived(
        header,
        pixels_of(row, "out_pixels"),
        method=spec.method,
        description=f"harmonize {spec.method} ({spec.mode}) model {spec.model_hash}",
        uid_entropy=[spec.method, spec.pixels_hash],  # source UIDs are mixed in by dicom/encode.py
        # Sources that share a SOP Instance UID (copies, re-sends) still get distinct outputs.
        instance_entropy=[row["source_uri"], row.get("source_etag") or ""],
        deidentify=spec.deidentify,
        model_hash=spec.model_hash,  # the Contributing Equipment's Device UID
    )  # the encoded file replaces the header payload until it is written


@_stage("write", "write_s")
def _write(row: dict[str, Any], spec: RunSpec, storage: Storage) -> None:
    if spec.store_uri is not None:  # into a PACS, named by the derived instance's own UIDs
        out_uri = instance_uri_of(spec.store_uri, row["header"])
    else:
        out_uri = spec.out_uri_for(row["source_uri"], row["header"])
    storage.write(out_uri, row["header"])
    row["out_uri"] = out_uri


def encode_and_write(row: dict[str, Any], spec: RunSpec, storage: Storage) -> dict[str, Any]:
    """Stage 3 (CPU): derived DICOM written under OUT/images/ (or stored to the PACS of
    ``spec.store_uri``); returns the final manifest row."""
    row = _write(_encode(row, spec), spec, storage)
    for key in PAYLOAD:
        row.pop(key, None)
    row["processed_at"] = datetime.now(UTC)
    return row


def process_batch(
    rows: list[dict[str, Any]],
    harmonizer: Harmonizer,
    spec: RunSpec,
    storage: Storage,
    classifier: Scorer | None = None,
) -> list[dict[str, Any]]:
    """All stages for a batch of objects in this process (the local executor's path): read and
    decoded together, harmonized and scored together, then encoded and written one by one."""
    rows = harmonize_and_measure_batch(read_and_decode_batch(rows, spec, storage), harmonizer,
                                       classifier)  # fmt: skip
    return [encode_and_write(row, spec, storage) for row in rows]
