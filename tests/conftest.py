"""Shared fixtures: a real S3 server (SeaweedFS on 127.0.0.1), a real PACS (Orthanc with
DICOMweb on 127.0.0.1), a local Ray session, small synthetic two-site archives and the models
fitted or trained on them, built once per test session, ``run_archive``, the tests' one way to
harmonize an archive, and ``run_cli``, their one way to call the `harmonize` command line
in-process."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harmonize.io.storage import Storage
    from harmonize.run.orchestrate import Executor
    from harmonize.run.spec import RunSummary

for _key, _value in {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
}.items():
    os.environ.setdefault(_key, _value)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: each of them, and every process it starts (Ray
    # workers, commands), computes on one thread instead of oversubscribing the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGET, SOURCE = "shenzhen-like", "mc-like"
#: Modules that run longest, collected first so that pytest-xdist's work stealing never leaves
#: one of them to start last (the rest of the order is pytest's).
LONGEST_FIRST = ("test_readme.py", "distributed/test_train.py")
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
def orthanc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PACS: Orthanc + DICOMweb on 127.0.0.1 (tests/orthanc.py); skipped locally when
    the Debian packages are missing, a failure under CI."""
    from orthanc import OrthancServer, orthanc_missing

    missing = orthanc_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} in CI: .ci/run must install orthanc and orthanc-dicomweb")
        pytest.skip(missing)
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.close()


@pytest.fixture
def pacs(orthanc_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The session's Orthanc, emptied, with its credentials in this test's environment."""
    if orthanc_server.proc.poll() is not None:  # a test killed it
        orthanc_server.start()
    orthanc_server.clear()
    for key, value in orthanc_server.env().items():
        monkeypatch.setenv(key, value)
    return orthanc_server


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


@pytest.fixture(scope="session")
def cyclegan_model(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny CycleGAN trained for a few steps on the session archive (no Ray)."""
    from harmonize.training.config import load_train_config
    from harmonize.training.data import prepare_training_data
    from harmonize.training.gan import train

    out = str(tmp_path_factory.mktemp("cyclegan"))
    config = load_train_config(
        None,
        steps=4,
        crop_size=32,
        load_size=48,
        log_every=2,
        checkpoint_every=4,
        validation_images=2,
        model={"ngf": 8, "ndf": 8, "n_blocks": 2},
    )
    data = prepare_training_data(str(archive / SOURCE), str(archive / TARGET), 48, progress=False)
    train(config, data, out, progress=False)
    return out


@pytest.fixture(scope="session")
def classifier_model(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small classifier trained for a few steps on the target site (its scores are what the
    run tests check, not its accuracy)."""
    from harmonize.classifier.config import ClassifierConfig
    from harmonize.classifier.data import prepare_classifier_data
    from harmonize.classifier.training import train_classifier

    config = ClassifierConfig(
        steps=4, batch_size=4, input_size=64, width=8, log_every=2, validate_every=4,
        checkpoint_every=4, val_fraction=0.25,
    )  # fmt: skip
    data = prepare_classifier_data(
        str(archive / TARGET), str(archive / "labels.parquet"), 64, progress=False, workers=1
    )
    out = str(tmp_path_factory.mktemp("classifier") / "model")
    train_classifier(config, data, out, progress=False)
    return out


@pytest.fixture(scope="session")
def local_run(
    archive: Path, histogram_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The output prefix of a local run of the source site with histogram matching (the
    reference the Ray Data stream is compared to)."""
    out = tmp_path_factory.mktemp("run-local")
    run_archive(archive, histogram_model, out)
    return out


def run_archive(
    archive: Path,
    model: str,
    out: Path | str,
    executor: Executor | None = None,
    *,
    method: str = "histogram",
    mode: str = "direct",
    classifier: str | None = None,
    input_uri: str | None = None,
    storage: Storage | None = None,
    **options: Any,
) -> RunSummary:
    """`harmonize run` of the archive's source site (or ``input_uri``) into ``out``, on
    ``executor`` (default: the local one), with the archive's labels unless ``labels_uri`` says
    otherwise; ``options`` are further ``RunOptions``. Returns the run's summary."""
    from harmonize.io.storage import Storage
    from harmonize.run.local import LocalExecutor
    from harmonize.run.orchestrate import run_harmonization
    from harmonize.run.spec import RunOptions

    options.setdefault("labels_uri", str(archive / "labels.parquet"))
    return run_harmonization(
        input_uri=input_uri or str(archive / SOURCE),
        out_uri=str(out),
        method=method,
        model_uri=model,
        executor=executor or LocalExecutor(),
        mode=mode,
        classifier_uri=classifier,
        storage=storage or Storage(),
        options=RunOptions(progress=False, **options),
    )


def run_cli(*args: str) -> int:
    """The exit status of `harmonize ARGS` run in this process (output goes to capsys)."""
    from harmonize.cli.main import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.as_posix()
        return next((i for i, end in enumerate(LONGEST_FIRST) if path.endswith(end)), 99)

    items.sort(key=rank)  # stable: modules stay together, in pytest's order
