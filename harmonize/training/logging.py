"""Rank 0's training logs: ``metrics.jsonl`` (one JSON line per logged step) and TensorBoard."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from harmonize.errors import HarmonizeError
from harmonize.io.storage import Storage, is_s3, join

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_FOLDER = "tensorboard"
NOT_LOSSES = ("step", "lr", "seconds_per_step")  # logged next to the losses


class MetricsLog:
    """Rank 0's logs: ``metrics.jsonl`` (rewritten whole at each log) and TensorBoard scalars
    (written locally; copied to ``out_uri/tensorboard/`` by ``sync`` when out_uri is s3://).

    On resume, lines after ``start_step`` (logged after the checkpoint) are dropped, and so are
    TensorBoard events (``purge_step``), so the logs read as one uninterrupted run.
    """

    def __init__(self, out_uri: str, storage: Storage, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.storage = storage
        self.uri = join(out_uri, METRICS_FILE)
        self.lines: list[str] = []
        if start_step > 0 and storage.exists(self.uri):
            for line in storage.read_text(self.uri).splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= start_step:
                    self.lines.append(line)
        self.remote = join(out_uri, TENSORBOARD_FOLDER) if is_s3(out_uri) else None
        self.local = (
            tempfile.mkdtemp(prefix="harmonize-tb-")
            if self.remote
            else storage.normalize(join(out_uri, TENSORBOARD_FOLDER))
        )
        self.writer = SummaryWriter(self.local, purge_step=start_step or None)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        self.lines.append(json.dumps({"step": step, **metrics}))
        self.storage.write_text(self.uri, "\n".join(self.lines) + "\n")
        for name, value in metrics.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def sync(self) -> None:
        self.writer.flush()
        if self.remote:
            root = Path(self.local)
            for path in root.rglob("*"):
                if path.is_file():
                    remote = join(self.remote, path.relative_to(root).as_posix())
                    self.storage.write(remote, path.read_bytes())

    def close(self) -> None:
        self.sync()
        self.writer.close()


def window_means(window: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each loss over a log window of steps."""
    return {name: float(np.mean([w[name] for w in window])) for name in window[0]}


def last_logged(out_uri: str, storage: Storage) -> dict[str, float]:
    """The last line of ``OUT/metrics.jsonl`` ({} when there is none yet, or it is being
    rewritten this moment)."""
    try:
        lines = storage.read_text(join(out_uri, METRICS_FILE)).splitlines()
        return dict(json.loads(lines[-1])) if lines else {}
    except (HarmonizeError, ValueError):
        return {}


def last_logged_losses(out_uri: str, storage: Storage) -> dict[str, float]:
    """The losses of the last logged window."""
    last = last_logged(out_uri, storage)
    return {k: float(v) for k, v in last.items() if k not in NOT_LOSSES}
