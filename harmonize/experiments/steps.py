"""The steps of an experiment: each said as it starts, timed, and recorded when done, so that the
same experiment started again into the same OUT continues where it stopped.

A step's record, ``OUT/steps/<name>.json``, holds its *key* and its small result (an AUC, the
run's summary line). The key is a hash of everything the step's output depends on: its own
settings (a config file's text, not only its path) and the keys of the steps whose outputs it
uses. A step whose record has the same key is not done again: its result is read back. A step
whose inputs changed (a method's config, a larger archive, a retrained classifier upstream)
gets another key, and so does every step after it, so exactly what depends on a change is
redone. A record is written only after its step finished, so an interrupted step is redone
whole; ``fresh`` ignores every record.

Example::

    steps = Steps(echo, store, out_uri)
    key = steps.key("classifier", settings, archive_key)
    auc = steps.run("classifier", "training the classifier", key, lambda: train(...))
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from harmonize import __version__
from harmonize.errors import HarmonizeError
from harmonize.io.storage import Storage, join

T = TypeVar("T")
Echo = Callable[[str], Any]


class Steps:
    """Says each step as it starts (with the time since the first), records its seconds, and
    skips a step an earlier run of the same experiment finished (see the module docstring)."""

    def __init__(
        self, echo: Echo, store: Storage | None = None, out_uri: str = "", fresh: bool = False
    ) -> None:
        self.echo, self.started = echo, time.perf_counter()
        self.store, self.folder, self.fresh = (
            store,
            join(out_uri, "steps") if out_uri else "",
            fresh,
        )
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []

    def start(self, name: str, text: str) -> Callable[[], None]:
        """Say that step ``name`` starts; the returned function records its seconds."""
        self.echo(f"[{time.perf_counter() - self.started:7.1f} s] {text}")
        t0 = time.perf_counter()

        def done() -> None:
            self.seconds[name] = round(time.perf_counter() - t0, 3)

        return done

    @staticmethod
    def key(*parts: Any) -> str:
        """A key for a step's output from everything it depends on (JSON-able values, other
        steps' keys) and harmonize's version."""
        text = json.dumps([__version__, *parts], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def run(
        self,
        name: str,
        text: str,
        key: str,
        work: Callable[[], T],
        complete: Callable[[T], bool] = lambda _: True,
    ) -> T:
        """Step ``name``: its recorded result when an earlier run did it with this ``key``,
        else ``work()``'s (JSON-able) result, recorded once it has returned if it is
        ``complete`` (a run with error rows is not: the next start retries them)."""
        recorded = self._recorded(name, key)
        if recorded is not None:
            self.echo(
                f"[{time.perf_counter() - self.started:7.1f} s] {text}: done by an earlier "
                "run of this experiment (reused)"
            )
            self.reused.append(name)
            return recorded["result"]
        done = self.start(name, text)
        result = work()
        done()
        if self.store is not None and self.folder and complete(result):
            record = {"key": key, "result": result, "seconds": self.seconds[name]}
            self.store.write_text(join(self.folder, f"{name}.json"), json.dumps(record) + "\n")
        return result

    def _recorded(self, name: str, key: str) -> dict[str, Any] | None:
        if self.fresh or self.store is None or not self.folder:
            return None
        uri = join(self.folder, f"{name}.json")
        try:
            if not self.store.exists(uri):
                return None
            record = json.loads(self.store.read(uri))
        except (HarmonizeError, OSError, ValueError):  # unreadable: do the step again
            return None
        return record if isinstance(record, dict) and record.get("key") == key else None
