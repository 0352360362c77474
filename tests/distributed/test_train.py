"""The one Ray Train driver, with 2 CPU workers (DDP over gloo): a GAN's and the classifier's
checkpoints and saved models, resume across calls, restart after a killed worker, relative paths,
--gpus checked against the cluster, and the CLI with output on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

from harmonize.classifier.model import load_classifier
from harmonize.distributed.train import gpu_shortfall, train_distributed
from harmonize.errors import ConfigError
from harmonize.io.storage import Storage, join
from harmonize.models.registry import load_model
from harmonize.training.checkpoint import (
    checkpoint_uri,
    clear_checkpoints,
    latest_checkpoint,
    load_checkpoint,
)
from harmonize.training.config import TrainConfig, load_train_config
from harmonize.training.job import cache_key, classifier_job, gan_job

from conftest import SOURCE, TARGET, run_cli
from training_samples import assert_same_state, classifier_config, labelled_archive, logged


def _settings() -> dict[str, Any]:
    return {
        "crop_size": 32,
        "load_size": 64,
        "log_every": 2,
        "checkpoint_every": 2,
        "validation_images": 2,
        "model": {"ngf": 8, "n_blocks": 2},
    }


def _config(steps: int) -> TrainConfig:
    return load_train_config(None, steps=steps, **_settings())


def _job(archive: Path, steps: int) -> Any:
    """The GAN job on ``archive``'s two sites, given as paths relative to the working directory."""
    inputs = (os.path.relpath(archive / SOURCE), os.path.relpath(archive / TARGET))
    return gan_job(_config(steps), *inputs)


def _train(archive: Path, out: str, steps: int, storage: Storage | None = None, **kw: Any) -> Any:
    return train_distributed(
        _job(archive, steps), out, workers=2, storage=storage or Storage(), progress=False, **kw
    )


def _logged_steps(out: Path) -> list[int]:
    return [line["step"] for line in logged(out)]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_archive(tmp_path_factory.mktemp("labelled"))


def _kill_a_worker_after_the_first_checkpoint(out: Path, killed: list[int]) -> threading.Thread:
    """A thread that SIGKILLs one Ray Train worker of this test session once ``out`` holds its
    first checkpoint, and appends its pid to ``killed``."""

    def kill() -> None:
        deadline = time.monotonic() + 300  # Ray Train's start and the data's decoding first
        while not (out / "checkpoints" / "step-0000002.pt").exists():
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        # Only this test session's own Ray processes (descendants of this process).
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.cmdline()[:1] == ["ray::RayTrainWorker"]:
                    proc.kill()
                    killed.append(proc.pid)
                    return
            except psutil.Error:
                continue

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def _straight_then_killed(
    job: Any, straight: str, killed_out: str, parts: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job trained on two workers twice: uninterrupted into ``straight``, then into
    ``killed_out`` with one worker SIGKILLed after the first checkpoint (Ray Train restarts the
    group). Checks that the killed run resumed, logged each step once and ended with the same
    ``parts`` of the final checkpoint, random states and rank 1's own state as the uninterrupted
    one; returns both summaries."""
    first = train_distributed(job, straight, workers=2, storage=Storage(), progress=False)
    steps, out = job.config.steps, Storage.normalize(killed_out)
    killed: list[int] = []
    killer = _kill_a_worker_after_the_first_checkpoint(Path(out), killed)
    second = train_distributed(job, out, workers=2, storage=Storage(), progress=False)
    killer.join(timeout=5)
    assert killed, "no Ray Train worker was found to kill"
    assert second["steps"] == steps
    assert 2 <= second["start_step"] < steps  # the restarted group resumed, not from 0
    assert _logged_steps(Path(out)) == list(range(2, steps + 1, 2))  # each step logged once
    ours = load_checkpoint(checkpoint_uri(out, steps), Storage())
    theirs = load_checkpoint(checkpoint_uri(Storage.normalize(straight), steps), Storage())
    assert ours["world_size"] == 2 and set(ours["ranks"]) == {1}  # rank 1's own state is kept
    for part in (*parts, "random", "ranks"):
        assert_same_state(ours[part], theirs[part], part)
    return first, second


@pytest.mark.slow
def test_two_gan_workers_resume_exactly_after_a_kill_and_across_calls(
    ray_session: object, archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two CPU workers (DDP over gloo): checkpoints, the model and its card; one worker SIGKILLed
    after the first checkpoint ends as the uninterrupted run (every rank's sampler, random
    streams and image pools restored); a later call continues from the last checkpoint with the
    cached data. Relative paths (inputs and output) are the driver's: Ray Train's workers run
    in folders of their own."""
    monkeypatch.chdir(tmp_path)  # not the working directory Ray and its workers started in
    job = _job(archive, 10)
    first, _ = _straight_then_killed(job, "straight", "killed", ("recipe",))
    out = tmp_path / "straight"
    assert (first["start_step"], first["steps"], first["workers"]) == (0, 10, 2)
    assert first["method"] == "cyclegan" and not first["data_cached"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"step-{step:07d}.pt" for step in range(2, 11, 2)
    ]
    assert first["model_uri"] == str(out / "harmonizer.json")
    model = load_model(str(out), expected_method="cyclegan")
    assert model.card["world_size"] == 2 and model.card["config"]["steps"] == 10
    assert model.card["validation"] == first["validation"]
    assert set(first["losses"]) >= {"g_total", "d_a", "d_b"}
    key = cache_key(job, Storage())
    assert Path(first["data_uri"]) == out / "cache" / f"training-data-{key}.json"

    # A later call continues from the step-10 checkpoint and reuses the decoded data.
    longer = _train(archive, "killed", steps=12)
    assert (longer["start_step"], longer["steps"]) == (10, 12) and longer["data_cached"]
    assert _logged_steps(tmp_path / "killed") == list(range(2, 13, 2))  # one unbroken log
    assert load_model(str(tmp_path / "killed")).card["config"]["steps"] == 12


@pytest.mark.slow
def test_two_classifier_workers_train_a_model_and_resume_exactly_after_a_kill(
    ray_session: object, labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths are the driver's, as for the GAN above
    steps = 40  # a classifier step is quick: enough of them for the kill to land mid-run
    config = classifier_config(
        steps=steps, log_every=2, validate_every=20, checkpoint_every=2, width=4
    )
    inputs = (os.path.relpath(labelled / TARGET), os.path.relpath(labelled / "labels.parquet"))
    job = classifier_job(config, *inputs)
    summary, _ = _straight_then_killed(job, "classifier", "killed", ("model", "optimizer"))
    out = tmp_path / "classifier"
    assert (summary["steps"], summary["workers"], summary["start_step"]) == (steps, 2, 0)
    assert summary["n_images"]["validation"] == {"no_finding": 1, "finding": 1}
    assert summary["n_skipped"] == {"unlabelled": 0, "unreadable": 1, "duplicate": 0}
    classifier = load_classifier(str(out))
    assert classifier.card["world_size"] == 2
    assert classifier.card["validation"] == summary["validation"]
    assert Path(summary["data_uri"]).parent == out / "cache"
    scores = classifier.score([np.full((70, 64), 0.5, np.float32)])
    assert 0.0 <= scores[0] <= 1.0


@pytest.mark.slow
def test_more_gpus_than_the_cluster_has_fail_at_once(
    ray_session: object, archive: Path, tmp_path: Path
) -> None:
    job = gan_job(_config(2), str(archive / SOURCE), str(archive / TARGET))
    with pytest.raises(ConfigError, match=r"--gpus 64 asks for 64 GPUs, the Ray cluster .* has"):
        train_distributed(job, str(tmp_path / "out"), gpus=64, storage=Storage())
    assert not (tmp_path / "out").exists()  # nothing decoded, nothing written


@pytest.mark.slow
def test_cli_trains_to_s3(
    ray_session: object,
    s3_server: Any,
    archive: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**_settings(), "steps": 50, "crop_size": 48}))
    storage = Storage(endpoint_url=s3_server.endpoint_url)
    out = join(s3_server.create_bucket("train-out"), "cyclegan")
    code = run_cli(
        "--s3-endpoint", s3_server.endpoint_url,
        "train", "cyclegan",
        "--source", str(archive / SOURCE), "--target", str(archive / TARGET),
        "--out", out, "--config", str(config),
        "--workers", "2", "--steps", "2", "--crop-size", "32", "--no-progress",
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "trained cyclegan to step 2 on 2 worker(s) (CPU)" in printed
    assert "g_total" in printed
    assert f"model: {join(out, 'harmonizer.json')}" in printed
    assert storage.exists(join(out, "checkpoints", "step-0000002.pt"))
    assert len(storage.list(join(out, "cache"), suffixes=(".json",))) == 1  # the index
    assert len(storage.list(join(out, "cache"), suffixes=(".arrow",))) == 2  # a shard a site
    # Ray Train's own run files sit under the output prefix too (pyarrow S3 + endpoint).
    assert storage.list(join(out, "ray-train"))
    model = load_model(out, storage, expected_method="cyclegan")
    assert model.card["n_images"] == {"source": 8, "target": 8}
    assert (model.card["config"]["steps"], model.card["config"]["crop_size"]) == (2, 32)
    # --no-resume's first move, on S3: the checkpoints go, the model stays.
    clear_checkpoints(out, storage)
    assert latest_checkpoint(out, storage) is None
    assert storage.exists(join(out, "harmonizer.json"))


def test_bad_settings_fail_before_ray(archive: Path, tmp_path: Path) -> None:
    job = gan_job(_config(2), str(archive / SOURCE), str(archive / TARGET))
    with pytest.raises(ConfigError, match="one worker per GPU"):
        train_distributed(job, str(tmp_path), gpus=2, workers=3, storage=Storage())
    (tmp_path / "empty").mkdir()
    empty = gan_job(_config(2), str(tmp_path / "empty"), str(archive / TARGET))
    with pytest.raises(ConfigError, match="no source images"):
        train_distributed(empty, str(tmp_path / "out"), storage=Storage())
    assert not (tmp_path / "out").exists()


def test_the_gpu_check_says_what_the_cluster_has() -> None:
    assert gpu_shortfall(2, {"CPU": 2.0}, "at http://head:8265") == (
        "--gpus 2 asks for 2 GPUs, the Ray cluster at http://head:8265 has 0 (CPUs: 2)"
    )
    assert (
        gpu_shortfall(1, {"CPU": 8.0}, "x")
        == "--gpus 1 asks for 1 GPU, the Ray cluster x has 0 (CPUs: 8)"
    )
    assert gpu_shortfall(4, {"CPU": 8.0, "GPU": 4.0}, "x") is None  # enough


def test_cli_exits_2_with_a_clear_message_for_a_missing_labels_file(
    labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(
        "train", "classifier",
        "--archive", str(labelled / TARGET),
        "--labels", str(tmp_path / "labels.parquet"),
        "--out", str(tmp_path / "out"), "--no-progress",
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harmonize: error: cannot read the labels table")
    assert "labels.parquet that `harmonize synth` writes" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
