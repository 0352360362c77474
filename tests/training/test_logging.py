"""Rank 0's logs: metrics.jsonl rewritten whole, lines after a resumed checkpoint dropped, and the
last logged losses read back."""

from __future__ import annotations

import json
from pathlib import Path

from harmonize.io.storage import Storage
from harmonize.training.logging import MetricsLog, last_logged, last_logged_losses, window_means


def test_a_resumed_log_reads_as_one_run(tmp_path: Path) -> None:
    out = str(tmp_path)
    log = MetricsLog(out, Storage(), start_step=0)
    for step in (1, 2, 3):
        log.write(step, {"loss": float(step), "lr": 0.1, "seconds_per_step": 0.5})
    log.close()
    resumed = MetricsLog(out, Storage(), start_step=2)  # the checkpoint was at step 2
    resumed.write(3, {"loss": 30.0, "lr": 0.1, "seconds_per_step": 0.5})
    resumed.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(x["step"], x["loss"]) for x in lines] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert last_logged(out, Storage())["step"] == 3
    assert last_logged_losses(out, Storage()) == {"loss": 30.0}
    assert last_logged(str(tmp_path / "nothing"), Storage()) == {}


def test_window_means_average_each_loss() -> None:
    assert window_means([{"a": 1.0, "b": 4.0}, {"a": 3.0, "b": 0.0}]) == {"a": 2.0, "b": 2.0}
