"""Training checkpoints: where they live, the latest one, writing and reading them (weights only,
nothing unpickled), every random stream a step touches, and the resume compatibility check.

A checkpoint is one ``torch.save`` of tensors and plain values at
``OUT/checkpoints/step-0002000.pt``: ``format``, ``step``, ``seconds``, ``config``, ``random``,
``window``, ``losses`` and ``code_version`` (the loop's), plus what the trained task saves (a GAN:
``recipe``; the classifier: ``kind``, ``split``, ``model``, ``optimizer``, ``validation``).
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from harmonize.errors import ConfigError, HarmonizeError, StorageError
from harmonize.io.storage import Storage, is_s3, join

CHECKPOINT_FOLDER = "checkpoints"
CHECKPOINT_FORMAT = 1
_CHECKPOINT_NAME = re.compile(r"step-(\d+)\.pt$")


def checkpoint_uri(out_uri: str, step: int) -> str:
    return join(out_uri, CHECKPOINT_FOLDER, f"step-{step:07d}.pt")


def latest_checkpoint(out_uri: str, storage: Storage | None = None) -> str | None:
    """The URI of the checkpoint with the highest step under ``out_uri/checkpoints``, if any."""
    store = storage or Storage()
    folder = join(out_uri, CHECKPOINT_FOLDER)
    if not is_s3(folder) and not os.path.isdir(store.normalize(folder)):
        return None
    found = [
        (int(match.group(1)), obj.uri)
        for obj in store.list(folder, suffixes=(".pt",))
        if (match := _CHECKPOINT_NAME.search(obj.uri))
    ]
    return max(found)[1] if found else None


def clear_checkpoints(out_uri: str, storage: Storage) -> None:
    """Delete ``OUT/checkpoints/`` (start over, so that a restart after a failure resumes from
    this run's checkpoints, never from an older run's); the model and the logs stay."""
    if latest_checkpoint(out_uri, storage) is None:
        return
    fs, path = storage.filesystem(join(out_uri, CHECKPOINT_FOLDER))
    try:
        fs.delete_dir_contents(path, missing_dir_ok=True)
    except OSError as err:
        raise HarmonizeError(f'cannot delete the checkpoints under "{out_uri}": {err}') from err


def save_checkpoint(uri: str, state: dict[str, Any], storage: Storage) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    storage.write(uri, buffer.getvalue())


def load_checkpoint(uri: str, storage: Storage) -> dict[str, Any]:
    """A checkpoint read with ``weights_only=True`` (no code is unpickled), tensors on the CPU."""
    try:
        state = torch.load(io.BytesIO(storage.read(uri)), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, struct.error) as err:
        raise StorageError(f'"{uri}" is not a readable checkpoint: {err}') from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise StorageError(f'"{uri}" is not a harmonize training checkpoint')
    return state


def check_resumable(
    uri: str,
    checkpoint: Mapping[str, Any],
    config: Mapping[str, Any],
    keys: Sequence[str],
    kind: str | None = None,
) -> None:
    """ConfigError unless the checkpoint is of ``kind`` (None: a GAN's, which records none) and
    was trained with the same values of ``keys`` as ``config``."""
    if checkpoint.get("kind") != kind:
        found, expected = checkpoint.get("kind") or "GAN", kind or "GAN"
        raise ConfigError(
            f'checkpoint "{uri}" is a {found} checkpoint, this run trains a {expected}; train '
            "into another --out, or resume=False to start over"
        )
    saved = checkpoint["config"]
    for key in keys:
        if saved.get(key) != config[key]:
            raise ConfigError(
                f'checkpoint "{uri}" was trained with {key}={saved.get(key)!r}, this run has '
                f"{key}={config[key]!r}; use the same settings, another --out, or "
                "resume=False to start over"
            )


def random_state(sampler: np.random.Generator) -> dict[str, Any]:
    """Every random stream a step may touch, as tensors and plain values."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {
        "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
        "pos": int(numpy_state["state"]["pos"]),
    }
    return {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "sampler": sampler.bit_generator.state,
    }


def restore_random_state(state: Mapping[str, Any], sampler: np.random.Generator) -> None:
    """Put back what ``random_state`` saved (the global streams and ``sampler``)."""
    random.setstate(state["python"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        "key": state["numpy"]["state"]["key"].numpy().astype(np.uint32),
        "pos": state["numpy"]["state"]["pos"],
    }
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    sampler.bit_generator.state = state["sampler"]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global random streams."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
