"""The configs that ship inside the package: one file each (no copy left in jobs/configs/),
listed by name, each a valid config of what it trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmonize.classifier.config import load_classifier_config
from harmonize.errors import ConfigError
from harmonize.experiments.packaged import config_names, config_path, cpu_quick_name, resolve_config
from harmonize.models.registry import NEURAL, method_names
from harmonize.training.config import load_train_config

REPO = Path(__file__).resolve().parents[2]


def test_a_cpu_sized_config_ships_for_every_neural_method_and_the_classifier() -> None:
    trained = [*method_names(NEURAL), "classifier"]
    assert config_names() == sorted(cpu_quick_name(name) for name in trained)
    for name in trained:
        path = Path(config_path(cpu_quick_name(name)))
        assert path.is_file() and path.is_relative_to(REPO / "harmonize" / "experiments")
        assert not (REPO / "jobs" / "configs" / path.name).exists()  # one file each
        assert (REPO / "jobs" / "configs" / f"{name}.yaml").is_file()  # the published example


def test_each_packaged_config_is_valid_and_cpu_sized() -> None:
    for method in method_names(NEURAL):
        config = load_train_config(config_path(f"{method}-cpu-quick"))
        assert config.method == method and config.crop_size == 128 and config.steps <= 3000
    classifier = load_classifier_config(config_path("classifier-cpu-quick"))
    assert classifier.input_size == 128 and classifier.steps == 600


def test_names_resolve_and_anything_else_is_left_as_given() -> None:
    assert resolve_config("unit-cpu-quick") == config_path("unit-cpu-quick")
    for other in ("s3://cfg/unit.yaml", "/abs/unit.yaml", "configs/unit.yaml"):
        assert resolve_config(other) == other
    with pytest.raises(ConfigError, match='no packaged config "unit"; the packaged configs: '):
        config_path("unit")
