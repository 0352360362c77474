"""Shared fixtures: a real S3 server (SeaweedFS on 127.0.0.1), a local Ray session, and small
synthetic two-site archives built once per test session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

for _key, _value in {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
}.items():
    os.environ.setdefault(_key, _value)

TARGET, SOURCE = "shenzhen-like", "mc-like"
REAL_PNG_DIR = Path(__file__).resolve().parent / "data" / "cxr-real"  # bundled subset


def display(ds: Any) -> Any:
    """Display image in [0, 1] (white = attenuating) by pydicom's own LUTs, the reference the
    synthetic archives are checked against: modality LUT, VOI LUT, MONOCHROME1 flip."""
    import numpy as np
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    def chain(stored: Any) -> Any:
        return np.asarray(apply_voi_lut(apply_modality_lut(stored, ds), ds), dtype=np.float64)

    lo, hi = chain(np.array([0, 2**ds.BitsStored - 1], dtype=np.uint16))
    out = (chain(ds.pixel_array) - lo) / (hi - lo)
    return 1.0 - out if ds.PhotometricInterpretation == "MONOCHROME1" else out


def read_archive(root: Path) -> tuple[Any, dict[str, bytes]]:
    """(labels table, {relative path: file bytes}) of a synthetic archive."""
    from harmonize.io.labels import read_labels

    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.dcm")}
    return read_labels(str(root)), files


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    """Path of dicom3tools' validator; skipped locally when missing, a failure under CI."""
    path = shutil.which("dciodvfy")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy is missing in CI: .ci/run must install dicom3tools")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    return path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from s3server import SeaweedS3

    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())  # Ray workers inherit the credentials
    yield server
    server.close()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def ray_session(s3_server: object) -> Iterator[object]:
    # Started after the S3 server so Ray workers inherit its credentials and endpoint.
    from harmonize.distributed.session import init_ray

    ray = init_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small two-site synthetic archive: 8 images per site at 256 px."""
    from harmonize.synth import synthesize_archive

    out = tmp_path_factory.mktemp("archive")
    synthesize_archive(str(out), [TARGET, SOURCE], 8, seed=3, matrix=256, progress=False)
    return out


@pytest.fixture(scope="session")
def histogram_model(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    from harmonize.methods.fit import fit_classical

    out = str(tmp_path_factory.mktemp("models") / "histogram")
    fit_classical("histogram", str(archive / TARGET), out, workers=1, progress=False)
    return out
