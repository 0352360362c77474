"""The one-process executor: every stage of every object in this process, a batch of objects
after the other (the sequential reference the Ray Data stream is measured and tested against)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from harmonize.errors import ConfigError
from harmonize.io.storage import Storage
from harmonize.methods.base import Harmonizer
from harmonize.run.spec import RunSpec
from harmonize.run.stages import (
    Scorer,
    encode_and_write,
    load_checked,
    mark_failed,
    process_batch,
    read_and_decode_batch,
)


class LocalExecutor:
    """Runs a run's stages in this process; nothing to start or stop.

    Args:
        batch_size: objects per batch, as on the Ray stream (``--batch-size``): decoded in one
            call (a GPU decodes their compressed frames at once), harmonized and scored in one
            classifier call, then encoded and written one by one.
    """

    name = "local"

    def __init__(self, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def rows(
        self, todo: list[dict[str, Any]], spec: RunSpec, storage: Storage
    ) -> Iterator[dict[str, Any]]:
        """One finished manifest row per row of ``todo``, in order."""
        batches = (todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size))
        try:
            harmonizer, classifier = self.load(spec, storage)
        except Exception as err:  # noqa: BLE001 - the rows say why, as on the stream
            for batch in batches:
                for row in read_and_decode_batch(batch, spec, storage):
                    yield encode_and_write(mark_failed(row, "harmonize", err), spec, storage)
            return
        for batch in batches:
            yield from process_batch(batch, harmonizer, spec, storage, classifier)

    def load(self, spec: RunSpec, storage: Storage) -> tuple[Harmonizer, Scorer | None]:
        """What the stages run with: the run's model and classifier (``load_checked``)."""
        return load_checked(spec, storage)
