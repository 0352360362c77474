"""A run's spec (what decides pixels and rows), its summary's exit code, and the worst of
several runs' codes."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from harmonize.run.spec import ExitCode, RunSpec, RunSummary, worst_exit_code


def test_adding_a_classifier_changes_the_skip_key_but_not_the_image_folder() -> None:
    plain = RunSpec("in", "out", "histogram", "m", "abc", "run-1")
    scored = RunSpec("in", "out", "histogram", "m", "abc", "run-1", "direct", "v", "clf", "h1")
    other = RunSpec("in", "out", "histogram", "m", "abc", "run-1", "direct", "v", "clf", "h2")
    assert plain.config_hash == plain.pixels_hash  # old manifests keep their keys
    assert len({plain.config_hash, scored.config_hash, other.config_hash}) == 3
    assert (
        plain.out_uri_for("in/a.dcm")
        == scored.out_uri_for("in/a.dcm")
        == other.out_uri_for("in/a.dcm")
    )


def test_storing_into_another_pacs_changes_the_skip_key() -> None:
    plain = RunSpec("in", "out", "histogram", "m", "abc", "run-1")
    scored = replace(plain, classifier_uri="clf", classifier_hash="h1")
    a, b = (replace(plain, store_uri=f"dicomweb+http://pacs-{k}/dicom-web") for k in "ab")
    hashes = {plain.config_hash, scored.config_hash, a.config_hash, b.config_hash}
    assert len(hashes) == 4
    assert replace(scored, store_uri=a.store_uri).config_hash not in hashes
    assert a.pixels_hash == plain.pixels_hash  # the derived pixels are the same


def test_derived_images_keep_their_path_below_the_input_prefix() -> None:
    spec = RunSpec("s3://b/in", "s3://b/out", "nyul", "m", "abc", "run-1")
    folder = f"s3://b/out/images/nyul/{spec.pixels_hash}"
    assert spec.out_uri_for("s3://b/in/site/x/a.dcm") == f"{folder}/site/x/a.dcm"
    assert spec.out_uri_for("s3://elsewhere/b.dcm") == f"{folder}/b.dcm"  # never outside OUT
    assert RunSpec("s3://b/in", "o", "nyul", "m", "abc", "run-2").pixels_hash == spec.pixels_hash


@pytest.mark.parametrize(
    ("counts", "code"),
    [
        ({"ok": 3}, ExitCode.OK),
        ({"ok": 1, "skipped": 2}, ExitCode.OK),
        ({"skipped": 3}, ExitCode.OK),
        ({"ok": 2, "error": 1}, ExitCode.SOME_ERRORS),
        ({"skipped": 2, "error": 1}, ExitCode.SOME_ERRORS),
        ({"error": 3}, ExitCode.ALL_ERRORS),
    ],
)
def test_a_summary_knows_its_exit_code(counts: dict[str, int], code: ExitCode) -> None:
    summary = RunSummary("r", "out/manifest/run=r", Counter(counts), seconds=1.0)
    assert summary.exit_code == code
    assert summary.line().startswith(f"run r: {sum(counts.values())} objects (")


def test_the_worst_run_decides_a_jobs_exit_code() -> None:
    ok, some, every = ExitCode.OK, ExitCode.SOME_ERRORS, ExitCode.ALL_ERRORS
    assert worst_exit_code([]) == ok
    assert worst_exit_code([ok, some, ok]) == some
    assert worst_exit_code([some, every]) == every
    assert worst_exit_code([every, ExitCode.USAGE, some]) == ExitCode.USAGE
    assert worst_exit_code([ExitCode.USAGE, ExitCode.INCOMPLETE, ok]) == ExitCode.INCOMPLETE
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4]


def test_deidentification_changes_the_output_hash_and_its_secret_is_never_recorded() -> None:
    from harmonize.dicom.deidentify import DeidentifyOptions

    secret = "the secret of this test, not recorded"
    base = RunSpec("s3://in", "s3://out", "histogram", "s3://m", "h1", "run-1")
    deid = replace(base, deidentify=DeidentifyOptions(secret))
    other = replace(base, deidentify=DeidentifyOptions("another secret entirely, also long"))
    modified = replace(base, deidentify=DeidentifyOptions(secret, retain_dates="modified"))
    hashes = {spec.pixels_hash for spec in (base, deid, other, modified)}
    assert len(hashes) == 4  # a new secret or option re-processes every object
    assert deid.pixels_hash == replace(base, deidentify=DeidentifyOptions(secret)).pixels_hash
    record = deid.as_dict()
    assert record["deidentify"] == DeidentifyOptions(secret).key()
    assert secret not in repr(record) and secret not in repr(deid)
    assert base.as_dict()["deidentify"] is None
