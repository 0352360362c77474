"""CycleGAN on Ray Train with 2 CPU workers (DDP over gloo): checkpoints, the saved model, resume
across calls, restart after a killed worker, and the CLI with output on a real S3 server
(SeaweedFS)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from harmonize.cli import main
from harmonize.distributed.train import clear_checkpoints, data_cache_key, train_distributed
from harmonize.errors import ConfigError
from harmonize.io.storage import Storage, join
from harmonize.models.registry import load_model
from harmonize.training import TrainConfig, latest_checkpoint, load_train_config

from conftest import SOURCE, TARGET

TINY = {"ngf": 8, "n_blocks": 2}


def _settings() -> dict[str, Any]:
    return {
        "crop_size": 32,
        "load_size": 64,
        "log_every": 2,
        "checkpoint_every": 2,
        "validation_images": 2,
        "model": TINY,
    }


def _config(steps: int) -> TrainConfig:
    return load_train_config(None, steps=steps, **_settings())


def _train(archive: Path, out: str, steps: int, storage: Storage | None = None, **kw: Any) -> Any:
    return train_distributed(
        _config(steps),
        str(archive / SOURCE),
        str(archive / TARGET),
        out,
        workers=2,
        storage=storage or Storage(),
        progress=False,
        **kw,
    )


def _logged_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_workers_write_checkpoints_and_a_model_then_resume(
    ray_session: object, archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cyclegan"
    first = _train(archive, str(out), steps=4)
    assert (first["start_step"], first["steps"], first["workers"]) == (0, 4, 2)
    assert not first["data_cached"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-0000002.pt",
        "step-0000004.pt",
    ]
    assert first["model_uri"] == str(out / "harmonizer.json")
    model = load_model(str(out), expected_method="cyclegan")
    assert model.card["world_size"] == 2 and model.card["config"]["steps"] == 4
    assert set(first["losses"]) >= {"g_total", "d_a", "d_b"}
    key = data_cache_key(str(archive / SOURCE), str(archive / TARGET), 64, Storage())
    assert Path(first["data_uri"]) == out / "cache" / f"training-data-{key}.npz"

    # A second call continues from the step-4 checkpoint and reuses the decoded data.
    second = _train(archive, str(out), steps=6)
    assert (second["start_step"], second["steps"]) == (4, 6)
    assert second["data_cached"] and second["data_uri"] == first["data_uri"]
    assert _logged_steps(out) == [2, 4, 6]  # one uninterrupted log
    assert load_model(str(out)).card["config"]["steps"] == 6


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_resumes_from_the_checkpoint(
    ray_session: object, archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cyclegan"
    killed: list[int] = []

    def kill_a_worker_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "step-0000002.pt").exists():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        # Only this test session's own Ray processes (descendants of this process).
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.cmdline()[:1] == ["ray::RayTrainWorker"]:
                    proc.kill()
                    killed.append(proc.pid)
                    return
            except psutil.Error:
                continue

    killer = threading.Thread(target=kill_a_worker_after_the_first_checkpoint, daemon=True)
    killer.start()
    summary = _train(archive, str(out), steps=16)
    killer.join(timeout=5)
    assert killed, "no Ray Train worker was found to kill"
    assert summary["steps"] == 16
    assert 2 <= summary["start_step"] < 16  # the restarted group resumed, not from 0
    assert _logged_steps(out) == list(range(2, 17, 2))
    assert load_model(str(out), expected_method="cyclegan").card["config"]["steps"] == 16


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
    main(
        [
            "--s3-endpoint", s3_server.endpoint_url,
            "train", "cyclegan",
            "--source", str(archive / SOURCE), "--target", str(archive / TARGET),
            "--out", out, "--config", str(config),
            "--workers", "2", "--steps", "2", "--crop-size", "32", "--no-progress",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "trained cyclegan to step 2 on 2 worker(s) (CPU)" in printed
    assert "g_total" in printed
    assert f"model: {join(out, 'harmonizer.json')}" in printed
    assert storage.exists(join(out, "checkpoints", "step-0000002.pt"))
    assert len(storage.list(join(out, "cache"), suffixes=(".npz",))) == 1
    # Ray Train's own run files sit under the output prefix too (pyarrow S3 + endpoint).
    assert storage.list(join(out, "ray-train"))
    model = load_model(out, storage, expected_method="cyclegan")
    assert model.card["n_images"] == {"source": 8, "target": 8}
    assert (model.card["config"]["steps"], model.card["config"]["crop_size"]) == (2, 32)
    # --no-resume's first move, on S3: the checkpoints go, the model stays.
    clear_checkpoints(out, storage)
    assert latest_checkpoint(out, storage) is None
    assert storage.exists(join(out, "harmonizer.json"))


def test_no_resume_clears_only_the_checkpoints(tmp_path: Path) -> None:
    out = tmp_path / "cyclegan"
    clear_checkpoints(str(out), Storage())  # nothing there yet: nothing to do
    for name in ("checkpoints/step-0000002.pt", "checkpoints/step-0000004.pt", "harmonizer.json"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"x")
    assert latest_checkpoint(str(out)) == str(out / "checkpoints" / "step-0000004.pt")
    clear_checkpoints(str(out), Storage())
    assert latest_checkpoint(str(out)) is None
    assert (out / "harmonizer.json").exists()


def test_bad_settings_fail_before_ray(archive: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="one worker per GPU"):
        train_distributed(
            _config(2), str(archive / SOURCE), str(archive / TARGET), str(tmp_path),
            gpus=2, workers=3, storage=Storage(),
        )  # fmt: skip
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no source images"):
        train_distributed(
            _config(2), str(tmp_path / "empty"), str(archive / TARGET), str(tmp_path / "out"),
            storage=Storage(),
        )  # fmt: skip
    assert not (tmp_path / "out").exists()
