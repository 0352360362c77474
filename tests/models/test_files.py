"""Model files: one writer and one reader, SHA-256-checked weights, hashes that ignore the card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harmonize.errors import ModelError
from harmonize.models.files import (
    CLASSIFIER_FILE,
    HARMONIZER_FILE,
    WEIGHTS_FILE,
    model_hash,
    read_model,
    write_model,
)


def _weights(seed: int) -> dict[str, torch.Tensor]:
    return {"w": torch.randn(3, 4, generator=torch.Generator().manual_seed(seed))}


def test_round_trip_gives_back_the_state_card_and_checked_weights(tmp_path) -> None:
    uri = write_model(
        str(tmp_path / "m"),
        method="cyclegan",
        state={"model_config": {"ngf": 8}},
        weights=_weights(0),
        card={"note": "t"},
    )
    assert uri == str(tmp_path / "m" / HARMONIZER_FILE)
    saved = read_model(str(tmp_path / "m"), expected_method="cyclegan")
    assert saved.method == "cyclegan" and saved.card == {"note": "t"}
    assert saved.model_config == {"ngf": 8}
    assert saved.state["weights_file"] == WEIGHTS_FILE
    assert saved.weights is not None
    torch.testing.assert_close(saved.weights["w"], _weights(0)["w"])
    assert saved.model_hash == model_hash("cyclegan", saved.state)
    assert read_model(uri).model_hash == saved.model_hash  # the JSON file's own URI works too


def test_the_hash_follows_the_state_and_never_the_card(tmp_path) -> None:
    def saved(name: str, seed: int, card: dict) -> str:
        write_model(
            str(tmp_path / name), method="unit", state={}, weights=_weights(seed), card=card
        )
        return read_model(str(tmp_path / name)).model_hash

    first = saved("a", 0, {"created_at": "2026-01-01", "train_seconds": 10.0})
    assert saved("b", 0, {"created_at": "2026-12-01", "train_seconds": 99.0}) == first
    assert saved("c", 1, {"created_at": "2026-01-01", "train_seconds": 10.0}) != first
    assert model_hash("unit", {"x": 1}) != model_hash("cyclegan", {"x": 1})


def test_changed_weights_another_version_and_another_kind_are_refused(tmp_path) -> None:
    folder = tmp_path / "m"
    write_model(str(folder), method="cyclegan", state={}, weights=_weights(0))
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="do not match their recorded SHA-256"):
        read_model(str(folder))
    with pytest.raises(
        ModelError, match=r"holds a harmonizer \(harmonizer.json\), not a classifier"
    ):
        read_model(str(folder), file_name=CLASSIFIER_FILE)
    with pytest.raises(ModelError, match="holds a cyclegan model, but --method unit was asked"):
        read_model(str(folder), expected_method="unit")
    doc = json.loads((folder / HARMONIZER_FILE).read_text())
    (folder / HARMONIZER_FILE).write_text(json.dumps({**doc, "format_version": 0}))
    with pytest.raises(ModelError, match="format version 0"):
        read_model(str(folder))


def test_a_missing_classifier_says_how_to_train_one(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no classifier at .*harmonize train classifier"):
        read_model(str(tmp_path / "none"), file_name=CLASSIFIER_FILE)
