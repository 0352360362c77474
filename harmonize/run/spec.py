"""What a run is: its spec (what decides the output), its options (what does not), its summary
and the exit codes of `harmonize run`."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

from harmonize import __version__
from harmonize.dicom.deidentify import DeidentifyOptions
from harmonize.errors import ConfigError, HarmonizeError
from harmonize.io import dicomweb
from harmonize.io.archive import DICOM_SUFFIXES, MAX_PIXELS, PART_ROWS, PART_SECONDS
from harmonize.io.keys import safe_key
from harmonize.io.manifest import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_SKIPPED,
)
from harmonize.io.storage import join


@dataclass(frozen=True)
class RunSpec:
    """What every stage of one run needs to know; identical for all objects of the run."""

    input_uri: str
    out_uri: str
    method: str
    model_uri: str
    model_hash: str
    run_id: str
    mode: str = "direct"
    code_version: str = __version__
    classifier_uri: str | None = None
    classifier_hash: str | None = None
    max_pixels: int = MAX_PIXELS  # larger images are refused before decoding (error rows)
    store_uri: str | None = None  # a DICOMweb root the derived images are stored to (STOW-RS)
    # PS3.15 Basic Profile with a secret (never recorded: as_dict holds its fingerprint)
    deidentify: DeidentifyOptions | None = None

    def __post_init__(self) -> None:
        if dicomweb.is_dicomweb(self.out_uri):
            raise ConfigError(
                f'the output "{self.out_uri}" is a PACS, which cannot hold the manifest; give a '
                "folder or s3:// prefix as --out and the PACS as --store-derived"
            )
        if self.store_uri is not None and not dicomweb.is_dicomweb(self.store_uri):
            raise ConfigError(
                f'--store-derived "{self.store_uri}" is not a DICOMweb root; write it as '
                "dicomweb+http(s)://HOST/ROOT (derived images go to --out without it)"
            )

    @property
    def pixels_hash(self) -> str:
        """Identifies everything that decides the output: method, model content, mode and the
        de-identification (its secret's fingerprint and options). Names the folder of the
        derived images and seeds their new UIDs."""
        parts: list[Any] = [self.method, self.model_hash, self.mode]
        if self.deidentify is not None:  # another secret or option: other headers and UIDs
            parts.append(self.deidentify.key())
        key = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def config_hash(self) -> str:
        """Identifies everything that decides a manifest row: the pixels, the classifier when
        scores are asked for, and the PACS the derived images are stored to (``store_uri``).
        Objects already ``ok`` under the same hash are skipped by a re-run (a run that adds a
        classifier, or stores into another PACS, therefore processes every object again)."""
        if self.classifier_hash is None and self.store_uri is None:
            return self.pixels_hash
        parts = [self.pixels_hash, self.classifier_hash]
        if self.store_uri is not None:  # without one, the hashes of older manifests are kept
            parts.append(self.store_uri)
        key = json.dumps(parts)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def out_uri_for(self, source_uri: str, derived: bytes = b"") -> str:
        """Where the derived image of ``source_uri`` goes: OUT/images/<method>/<pixels>/<rel>,
        ``rel`` its path under the input prefix made safe (``harmonize.io.keys``: whatever the
        object is called, the output stays under OUT); a DICOMweb instance's path is
        ``studies/<study>/series/<series>/instances/<sop>.dcm``. (With ``store_uri`` the
        derived image goes to the PACS instead: ``harmonize.io.dicomweb.instance_uri_of``.)

        A de-identified run does not keep the input's path, whose folder and file names often
        hold patient names or IDs: ``rel`` is ``<study>/<series>/<sop>.dcm`` from the UIDs of
        the ``derived`` file itself (pseudonyms)."""
        base = join(self.out_uri, "images", self.method, self.pixels_hash)
        if self.deidentify is not None:
            study, series, sop = dicomweb.instance_uids(derived)
            return join(base, study, series, f"{sop}.dcm")
        rel = relative_path(self.input_uri, source_uri)
        if dicomweb.is_dicomweb(source_uri):
            rel += ".dcm"
        return join(base, safe_key(rel))

    def as_dict(self) -> dict[str, Any]:
        """The spec's fields and hashes; de-identification as its key (the secret's fingerprint
        and options), never the secret."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "deidentify"}
        deid = self.deidentify.key() if self.deidentify is not None else None
        return {**values, "deidentify": deid, "config_hash": self.config_hash}


def relative_path(prefix: str, uri: str) -> str:
    """``uri`` relative to ``prefix`` (its file name when it is not under the prefix); a
    DICOMweb prefix's QIDO filters are no part of its path."""
    if dicomweb.is_dicomweb(prefix):
        prefix = dicomweb.strip_query(prefix)
    base = prefix.rstrip("/") + "/"
    return uri[len(base) :] if uri.startswith(base) else uri.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RunOptions:
    """What a run takes, lists and records besides its spec (none of it changes the output
    pixels; how the stages are executed is the executor's business)."""

    suffixes: tuple[str, ...] = DICOM_SUFFIXES  # () = every object under the input prefix
    labels_uri: str | None = None
    run_id: str | None = None
    progress: bool = True
    limit: int | None = None  # process at most this many objects (smoke tests)
    max_pixels: int = MAX_PIXELS  # refuse larger images (Rows x Columns) before decoding
    part_rows: int = PART_ROWS  # manifest rows are committed every part_rows rows ...
    part_seconds: float = PART_SECONDS  # ... or every part_seconds seconds
    store_derived: str | None = None  # a DICOMweb root: derived images stored there (STOW-RS)
    deidentify: DeidentifyOptions | None = None  # the run's RunSpec.deidentify


class ExitCode(IntEnum):
    """The exit status of `harmonize run` (and of the run jobs), as its ``--help`` tells."""

    OK = 0  # every listed object ended ok or skipped
    INCOMPLETE = 1  # the run could not finish; the manifest holds the parts committed so far
    USAGE = 2  # bad usage or input, found before any row was written
    SOME_ERRORS = 3  # every row written, some of them errors, the others done
    ALL_ERRORS = 4  # every row written, none ok or skipped


# From best to worst: of several runs (a nightly job), the worst one's code is the job's.
_SEVERITY = (
    ExitCode.OK,
    ExitCode.SOME_ERRORS,
    ExitCode.ALL_ERRORS,
    ExitCode.USAGE,
    ExitCode.INCOMPLETE,
)


def worst_exit_code(codes: Iterable[ExitCode]) -> ExitCode:
    """The worst of several runs' codes (``OK`` for none): could not finish, then bad input,
    then all errors, then some errors."""
    return max(codes, key=_SEVERITY.index, default=ExitCode.OK)


class RunIncomplete(HarmonizeError):
    """A run that had begun writing rows could not finish (exit code 1); the manifest holds the
    parts committed so far, and a re-run skips the objects already ``ok``."""


@dataclass
class RunSummary:
    """How many objects of a run ended in each status, how long it took, and so its exit code."""

    run_id: str
    manifest_uri: str
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    transient: int = 0  # error rows whose storage stayed unreachable (a re-run retries them)
    listing_sha256: str = ""  # of the listed objects' uri + etag (the run summary's)
    summary_uri: str = ""  # where the run's summary record went

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> ExitCode:
        if self.counts[STATUS_OK] + self.counts[STATUS_SKIPPED] == 0:
            return ExitCode.ALL_ERRORS
        return ExitCode.SOME_ERRORS if self.counts[STATUS_ERROR] else ExitCode.OK

    def line(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        if self.transient:
            parts += f"; {self.transient} of the errors transient: a re-run retries them"
        rate = self.counts.get("ok", 0) / self.seconds if self.seconds else 0.0
        return (
            f"run {self.run_id}: {self.total} objects ({parts}) in {self.seconds:.1f} s "
            f"({rate:.2f} images/s); manifest: {self.manifest_uri}"
        )
