"""The one-process executor: every stage of every object in this process, one object after the
other (the sequential reference the Ray Data stream is measured and tested against)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from harmonize.io.storage import Storage
from harmonize.run.spec import RunSpec
from harmonize.run.stages import (
    encode_and_write,
    load_checked,
    mark_failed,
    process_object,
    read_and_decode,
)


class LocalExecutor:
    """Runs a run's stages in this process; nothing to start or stop."""

    name = "local"

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def rows(
        self, todo: list[dict[str, Any]], spec: RunSpec, storage: Storage
    ) -> Iterator[dict[str, Any]]:
        """One finished manifest row per row of ``todo``, in order."""
        try:
            harmonizer, classifier = load_checked(spec, storage)
        except Exception as err:  # noqa: BLE001 - the rows say why, as on the stream
            for row in todo:
                failed = mark_failed(read_and_decode(row, spec, storage), "harmonize", err)
                yield encode_and_write(failed, spec, storage)
            return
        for row in todo:
            yield process_object(row, harmonizer, spec, storage, classifier)
