"""The method registry: names and kinds, classical configs, loading models by URI."""

from __future__ import annotations

import pytest

from harmonize.errors import ConfigError, ModelError
from harmonize.models.registry import (
    CLASSICAL,
    METHODS,
    NEURAL,
    create_harmonizer,
    gan_parts,
    load_model,
    method,
    method_names,
)


def test_registry_lists_every_method_by_kind() -> None:
    assert method_names() == ["histogram", "nyul", "multiscale", "cyclegan", "unit", "cut"]
    assert method_names(CLASSICAL) == ["histogram", "nyul", "multiscale"]
    assert method_names(NEURAL) == ["cyclegan", "unit", "cut"]
    assert method("cyclegan").modes == ("direct", "curve", "local")
    assert method("histogram").modes == ("direct",)
    assert all(entry.summary.endswith(".") for entry in METHODS.values())
    with pytest.raises(ConfigError, match="unknown method"):
        create_harmonizer("nope")
    with pytest.raises(ConfigError, match=r"unknown neural method \"nyul\"; choose one of"):
        gan_parts("nyul")


def test_neural_methods_are_trained_not_fitted() -> None:
    with pytest.raises(ConfigError, match="cyclegan is trained, not fitted"):
        create_harmonizer("cyclegan")


def test_missing_and_malformed_models_are_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="no model"):
        load_model(str(tmp_path / "missing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "harmonizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a harmonize model"):
        load_model(str(tmp_path / "bad"))
