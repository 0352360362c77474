"""The benchmark commands run end to end at toy sizes (their figures live in docs/)."""

from __future__ import annotations

import pytest

from harmonize.benchmarks.train import run_train_benchmark


def test_train_benchmark_measures_both_configurations() -> None:
    lines: list[str] = []
    result = run_train_benchmark(
        crop_size=32, batch_size=2, steps=1, warmup=1, compile=False, isolate=False,
        echo=lines.append,
    )  # fmt: skip
    assert [r["batch"] for r in result["rows"]] == [1, 2]
    assert all(r["pairs_per_s"] > 0 for r in result["rows"])
    assert (
        abs(result["speedup"] - result["rows"][1]["pairs_per_s"] / result["rows"][0]["pairs_per_s"])
        < 1e-12
    )
    assert any(line.startswith("cyclegan tuned / reference") for line in lines)
    assert "vs_baseline" not in result


def test_train_benchmark_compares_a_method_with_cyclegan_in_fresh_processes() -> None:
    lines: list[str] = []
    result = run_train_benchmark(
        method="cut", crop_size=32, batch_size=2, steps=1, warmup=1, compile=False,
        echo=lines.append,
    )  # fmt: skip
    assert [(r["method"], r["batch"]) for r in result["rows"]] == [
        ("cut", 1), ("cut", 2), ("cyclegan", 1), ("cyclegan", 2),
    ]  # fmt: skip
    # Each configuration built its networks in a process of its own: memory was added there.
    assert all(r["peak_bytes"] > 0 for r in result["rows"])
    for ratio, (mine, base) in zip(
        result["vs_baseline"], zip(result["rows"][:2], result["rows"][2:], strict=True), strict=True
    ):
        assert ratio["speed"] == pytest.approx(mine["pairs_per_s"] / base["pairs_per_s"])
        assert ratio["memory"] == pytest.approx(mine["peak_bytes"] / base["peak_bytes"])
    assert sum(line.startswith("cut / cyclegan") for line in lines) == 2


@pytest.mark.slow
def test_mode_benchmark_processes_every_image_in_every_mode(ray_session, tmp_path) -> None:
    from harmonize.benchmarks.run import run_mode_benchmark
    from harmonize.distributed.stream import make_executor

    result = run_mode_benchmark(
        make_executor, n_images=2, matrix=96, workdir=str(tmp_path), echo=lambda s: None
    )
    rows = [(r["mode"], r["images"]) for r in result["rows"]]
    assert rows == [("curve", 2), ("local", 2), ("direct", 2)]


@pytest.mark.slow
def test_train_data_benchmark_measures_preparation_memory_and_steps(ray_session, tmp_path) -> None:
    from harmonize.benchmarks.train_data import run_train_data_benchmark
    from harmonize.distributed.session import init_ray
    from harmonize.distributed.shards import ray_tasks
    from harmonize.distributed.train import train_distributed

    lines: list[str] = []
    result = run_train_data_benchmark(
        init_ray, ray_tasks, train_distributed, n_images=2, matrix=96, load_size=48,
        crop_size=32, steps=2, workdir=str(tmp_path), echo=lines.append,
    )  # fmt: skip
    assert result["prepare_images"] == 16  # 4 x 2 images per site, both sites
    assert result["prepare_speedup"] == pytest.approx(
        result["tasks_images_per_s"] / result["one_process_images_per_s"]
    )
    assert [r["images"] for r in result["rows"]] == [4, 16]  # every image, x1 and x4
    assert all(
        r["driver_peak_pss_mib"] > 0 and r["worker_peak_pss_mib"] > 0 for r in result["rows"]
    )
    assert result["in_memory_steps_per_s"] > 0 and result["sharded_steps_per_s"] > 0
    assert any(line.startswith("growth for 4x the images") for line in lines)
