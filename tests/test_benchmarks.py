"""The benchmark commands run end to end at toy sizes (their figures live in docs/)."""

from __future__ import annotations

import pytest

from harmonize.benchmarks.train import run_train_benchmark


def test_train_benchmark_measures_both_configurations() -> None:
    lines: list[str] = []
    result = run_train_benchmark(
        crop_size=32, batch_size=2, steps=1, warmup=1, compile=False, echo=lines.append
    )
    assert [r["batch"] for r in result["rows"]] == [1, 2]
    assert all(r["pairs_per_s"] > 0 for r in result["rows"])
    assert (
        abs(result["speedup"] - result["rows"][1]["pairs_per_s"] / result["rows"][0]["pairs_per_s"])
        < 1e-12
    )
    assert any(line.startswith("tuned / reference") for line in lines)


@pytest.mark.slow
def test_mode_benchmark_processes_every_image_in_every_mode(ray_session, tmp_path) -> None:
    from harmonize.benchmarks.run import run_mode_benchmark
    from harmonize.distributed.stream import make_executor

    result = run_mode_benchmark(
        make_executor, n_images=2, matrix=96, workdir=str(tmp_path), echo=lambda s: None
    )
    rows = [(r["mode"], r["images"]) for r in result["rows"]]
    assert rows == [("curve", 2), ("local", 2), ("direct", 2)]
