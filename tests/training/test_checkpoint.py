"""Checkpoints: the latest by step, clearing only them, reading weights only, the resume check,
and every random stream saved and put back."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonize.errors import ConfigError, StorageError
from harmonize.io.storage import Storage
from harmonize.training.checkpoint import (
    CHECKPOINT_FORMAT,
    check_resumable,
    checkpoint_uri,
    clear_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    random_state,
    restore_random_state,
    save_checkpoint,
)


class Code:
    """An object whose unpickling would import and run code."""


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


def test_checkpoints_hold_tensors_and_plain_values_read_back_weights_only(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    assert latest_checkpoint(out) is None
    for step in (9, 10, 2):
        save_checkpoint(
            checkpoint_uri(out, step), {"format": CHECKPOINT_FORMAT, "step": step}, Storage()
        )
    assert (
        latest_checkpoint(out)
        == checkpoint_uri(out, 10)
        == str(Path(out) / "checkpoints" / "step-0000010.pt")
    )
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": 3,
        "weights": torch.arange(4.0),
        "window": [{"a": 1.0}],
    }
    save_checkpoint(checkpoint_uri(out, 3), state, Storage())
    loaded = load_checkpoint(checkpoint_uri(out, 3), Storage())
    assert torch.equal(loaded["weights"], state["weights"]) and loaded["window"] == [{"a": 1.0}]
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(StorageError, match="not a readable checkpoint"):
        load_checkpoint(str(tmp_path / "junk.pt"), Storage())
    save_checkpoint(str(tmp_path / "other.pt"), {"format": 99}, Storage())
    with pytest.raises(StorageError, match="not a harmonize training checkpoint"):
        load_checkpoint(str(tmp_path / "other.pt"), Storage())

    save_checkpoint(
        str(tmp_path / "code.pt"), {"format": CHECKPOINT_FORMAT, "x": Code()}, Storage()
    )
    with pytest.raises(StorageError, match="not a readable checkpoint"):
        load_checkpoint(str(tmp_path / "code.pt"), Storage())


def test_resume_check_names_the_kind_or_setting_that_differs() -> None:
    gan = {"config": {"method": "cyclegan", "crop_size": 32}}
    check_resumable("c.pt", gan, {"method": "cyclegan", "crop_size": 32}, ("method", "crop_size"))
    with pytest.raises(ConfigError, match=r"trained with crop_size=32, this run has crop_size=64"):
        check_resumable("c.pt", gan, {"method": "cyclegan", "crop_size": 64}, ("crop_size",))
    with pytest.raises(ConfigError, match="is a GAN checkpoint, this run trains a classifier"):
        check_resumable("c.pt", gan, {}, (), kind="classifier")
    classifier = {"kind": "classifier", "config": {"width": 8}}
    with pytest.raises(ConfigError, match="is a classifier checkpoint, this run trains a GAN"):
        check_resumable("c.pt", classifier, {"method": "cyclegan"}, ("method",))
    check_resumable("c.pt", classifier, {"width": 8}, ("width",), kind="classifier")


def test_random_state_puts_every_stream_back() -> None:
    sampler = np.random.default_rng([0, 1])
    saved = random_state(sampler)
    expected = (random.random(), np.random.rand(), torch.rand(1), sampler.random())
    restore_random_state(saved, sampler)
    again = (random.random(), np.random.rand(), torch.rand(1), sampler.random())
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])
    assert expected[3] == again[3]
