"""The bad-input corpus (tests/bad_inputs.py: 30 kinds of awkward objects) through both
executors: every object gets exactly one row with the status and reason it must have, the good
ones their derived images (copies that share a SOP Instance UID get distinct ones), and the
re-run writes no new ``ok`` row."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from bad_inputs import corpus, write_corpus

from harmonize.io.manifest import read_manifest

from conftest import SOURCE, TARGET, run_archive


@pytest.mark.timeout(600)
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_every_awkward_object_ends_with_its_status_and_reason(
    executor: str, archive: Path, histogram_model: str, tmp_path: Path, request
) -> None:
    stream = None
    if executor == "ray":
        from harmonize.distributed.stream import RayStreamExecutor

        request.getfixturevalue("ray_session")
        stream = RayStreamExecutor(batch_size=4)
    image = sorted((archive / TARGET).glob("*.dcm"))[0].read_bytes()
    monochrome1 = sorted((archive / SOURCE).glob("*.dcm"))[0].read_bytes()
    kinds = write_corpus(tmp_path / "in", corpus(image, monochrome1))
    assert len(kinds) >= 25
    out = tmp_path / "out"
    first = run_archive(
        archive, histogram_model, out, stream, input_uri=str(tmp_path / "in"), labels_uri=None
    )
    rows = read_manifest(str(out)).to_pandas().set_index("source_uri")
    assert sorted(rows.index) == sorted(kinds)  # count in = count out, one row each
    for uri, kind in kinds.items():
        row = rows.loc[uri]
        assert row.status == kind.status, (kind.name, row.error)
        if kind.status == "error":
            assert kind.reason in row.error, (kind.name, row.error)
            assert "\n" not in row.error and "Traceback" not in row.error
        else:
            assert Path(row.out_uri).is_file() and row.out_uri.startswith(str(out / "images"))
            if kind.reason:  # harmonized, with the measure it could not take left empty
                assert kind.reason in row.notes and pd.isna(row.ssim)
    n_ok = sum(k.status == "ok" for k in kinds.values())
    assert first.counts == {"ok": n_ok, "error": len(kinds) - n_ok}
    # Three copies of one image share its SOP Instance UID: three distinct derived instances.
    copies = [u for u, k in kinds.items() if k.make() == image]
    derived = {
        pydicom.dcmread(io.BytesIO(Path(rows.loc[u].out_uri).read_bytes())).SOPInstanceUID
        for u in copies
    }
    assert len(copies) == 3 and len(derived) == 3

    again = run_archive(
        archive, histogram_model, out, stream, input_uri=str(tmp_path / "in"), labels_uri=None
    )
    assert again.counts == {"skipped": n_ok, "error": len(kinds) - n_ok}  # no new ok row
    assert (read_manifest(str(out)).to_pandas().status == "ok").sum() == n_ok
