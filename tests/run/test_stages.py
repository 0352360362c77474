"""The per-object stages: a batch's objects read and decoded in one decode call, each error its
own row's; original and harmonized images scored in one call per batch, each score on its own
row; a scorer failure on one image makes only that row an error; a row keeps its first error;
the stages' model is the one the run planned with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from harmonize.dicom.decode import decode_dicom
from harmonize.errors import DicomError, ModelError, StorageError
from harmonize.io.storage import Storage
from harmonize.models.registry import create_harmonizer, load_model
from harmonize.run.spec import RunSpec
from harmonize.run.stages import (
    MAX_REASON,
    SSIM_SIDE,
    _stage,
    failure_reason,
    harmonize_and_measure_batch,
    load_checked,
    mark_failed,
    read_and_decode_batch,
)

from dicom_samples import make_image, random_values

rng = np.random.default_rng(0)


class MeanScorer:
    """Scores an image by its mean intensity; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.calls.append(len(images))
        return np.array([float(np.mean(im)) for im in images])


class PickyScorer(MeanScorer):
    """Fails on any image whose side is 40 px (stands in for an image a model cannot take)."""

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if any(40 in im.shape for im in images):
            raise ValueError("cannot score a 40-px image")
        return super().score(images)


def _rows(shapes: list[tuple[int, int]]) -> list[dict]:
    rows = []
    for index, (h, w) in enumerate(shapes):
        pixels = rng.random((h, w), dtype=np.float32) ** (1 + index)
        rows.append(
            {
                "image_id": f"1.2.{index}",
                "status": "ok",
                "rows": h,
                "cols": w,
                "pixels": pixels.tobytes(),
            }
        )
    return rows


@pytest.fixture(scope="module")
def harmonizer():
    target = [rng.random((48, 48), dtype=np.float32) ** 2 for _ in range(3)]
    return create_harmonizer("histogram").fit(target)


def test_each_row_gets_the_scores_of_its_own_original_and_harmonized_image(harmonizer) -> None:
    rows = _rows([(32, 32), (48, 32), (32, 64)])
    originals = [np.frombuffer(r["pixels"], np.float32).reshape(r["rows"], r["cols"]) for r in rows]
    scorer = MeanScorer()
    out = harmonize_and_measure_batch(rows, harmonizer, scorer)
    assert scorer.calls == [6]  # one call for the batch: 3 originals + 3 harmonized
    for row, original in zip(out, originals, strict=True):
        assert row["status"] == "ok"
        assert row["score_in"] == pytest.approx(float(original.mean()), abs=1e-7)
        harmonized = harmonizer.transform(original)
        assert row["score_out"] == pytest.approx(float(harmonized.mean()), abs=1e-6)
        assert row["score_s"] >= 0 and row["ssim"] is not None


def test_a_scorer_failure_on_one_image_becomes_that_rows_error_only(harmonizer) -> None:
    rows = _rows([(32, 32), (40, 32), (32, 64)])
    out = harmonize_and_measure_batch(rows, harmonizer, PickyScorer())
    assert [r["status"] for r in out] == ["ok", "error", "ok"]
    assert out[1]["error"].startswith("score: ValueError: cannot score a 40-px image")
    assert out[1].get("score_in") is None and out[1]["pixels"] is None
    assert all(r["score_in"] is not None for r in (out[0], out[2]))


def test_without_a_classifier_rows_have_no_scores(harmonizer) -> None:
    out = harmonize_and_measure_batch(_rows([(32, 32)]), harmonizer, None)
    assert out[0]["status"] == "ok" and out[0].get("score_in") is None


def test_a_failed_row_keeps_its_first_error_and_drops_its_payload() -> None:
    row = _rows([(8, 8)])[0]
    mark_failed(row, "decode", ValueError("bad header"))
    mark_failed(row, "harmonize", RuntimeError("no model"))
    assert row["status"] == "error"
    assert row["error"] == (
        "decode: ValueError: bad header (unexpected: the traceback is in the worker's log)"
    )
    assert row["pixels"] is None and row["out_pixels"] is None and row["header"] is None


def test_a_reason_is_one_bounded_line_and_the_traceback_goes_to_the_log(caplog) -> None:
    assert failure_reason("decode", DicomError("the image has 3 frames;\n split it")) == (
        "decode: the image has 3 frames; split it"
    )
    assert len(failure_reason("write", StorageError("x" * 5000))) == len("write: ") + MAX_REASON

    @_stage("harmonize", "harmonize_s")
    def broken(row: dict) -> None:
        raise KeyError("rows")

    row = broken({"status": "ok", "source_uri": "s3://a/b.dcm"})
    assert row["error"].startswith("harmonize: KeyError: 'rows' (unexpected")
    (record,) = [r for r in caplog.records if r.name == "harmonize.run.stages"]
    assert "s3://a/b.dcm" in record.getMessage() and record.exc_info is not None


@pytest.mark.parametrize("changed", ["model", "classifier"])
def test_the_stages_refuse_a_model_changed_since_planning(
    histogram_model: str, classifier_model: str, changed: str
) -> None:
    from harmonize.classifier.model import load_classifier

    spec = RunSpec(
        input_uri="in",
        out_uri="out",
        method="histogram",
        model_uri=histogram_model,
        model_hash=load_model(histogram_model).model_hash,
        run_id="r",
        classifier_uri=classifier_model,
        classifier_hash=load_classifier(classifier_model).model_hash,
    )
    harmonizer, classifier = load_checked(spec, Storage())
    assert harmonizer.method == "histogram" and classifier is not None
    stale = replace(spec, **{f"{changed}_hash": "0" * 16})
    with pytest.raises(ModelError, match=f'the {changed} at ".*" changed during run r'):
        load_checked(stale, Storage())


def test_an_image_smaller_than_the_ssim_window_is_harmonized_with_ssim_left_empty(
    harmonizer,
) -> None:
    small, fits = _rows([(8, 8), (SSIM_SIDE, SSIM_SIDE)])
    for row in (small, fits):
        row["truth_pixels"] = row["pixels"]
    out = harmonize_and_measure_batch([small, fits], harmonizer, MeanScorer())
    assert [r["status"] for r in out] == ["ok", "ok"]
    assert out[0].get("ssim") is None and out[0]["ssim_truth"] is None
    assert out[0]["notes"] == (
        f"ssim: the image is 8x8 pixels, smaller than SSIM's {SSIM_SIDE}-pixel window: SSIM "
        "left empty"
    )
    assert np.isfinite(out[0]["psnr_truth"]) and out[0]["score_out"] is not None
    assert out[1]["ssim"] is not None and out[1]["ssim_truth"] is not None
    assert out[1].get("notes") is None


def test_a_batch_is_read_and_decoded_each_error_on_its_own_row(tmp_path) -> None:
    files = {"a.dcm": make_image(random_values(12, False), 12), "bad.dcm": b"\x00" * 200}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    spec = RunSpec("in", "out", "histogram", "model", "0" * 16, "r")
    failed = mark_failed({"status": "ok", "source_uri": "x"}, "list", ValueError("first"))
    uris = [tmp_path / "a.dcm", tmp_path / "missing.dcm", tmp_path / "bad.dcm"]
    rows = [{"status": "ok", "source_uri": str(u), "truth_uri": None} for u in uris]
    out = read_and_decode_batch([*rows, failed], spec, Storage())
    assert [r["status"] for r in out] == ["ok", "error", "error", "error"]
    assert out[1]["error"].startswith("read: ") and out[1].get("decode_s") is None
    assert out[2]["error"].startswith("decode: not a DICOM file") and out[2]["decode_s"] >= 0
    assert out[3]["error"].startswith("list: ValueError: first")  # its first error
    image = decode_dicom(files["a.dcm"])
    assert out[0]["image_id"] == image.meta.sop_instance_uid and out[0]["decoder"] == "cpu"
    assert out[0]["pixels"] == image.pixels.tobytes() and out[0]["decode_s"] > 0
