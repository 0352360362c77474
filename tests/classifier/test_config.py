"""The classifier config: YAML with overrides, the shipped file documents the defaults, unknown
keys and bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmonize.classifier.config import Augmentation, ClassifierConfig, load_classifier_config
from harmonize.errors import ConfigError


def test_config_comes_from_yaml_with_overrides_and_names_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nlr: 1e-3\ninput_size: 64\naugmentation: {flip: false}\n")
    config = load_classifier_config(path, steps=9, width=None, augmentation={"shift": 0.0})
    assert (config.steps, config.lr, config.input_size, config.width) == (9, 0.001, 64, 64)
    assert config.augmentation == Augmentation(shift=0.0, scale=0.1, flip=False)
    shipped = load_classifier_config(Path(__file__).parents[2] / "jobs/configs/classifier.yaml")
    assert shipped == ClassifierConfig()  # the YAML documents the defaults
    path.write_text("steps: 7\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown classifier settings \['learning_rate'\]"):
        load_classifier_config(path)
    with pytest.raises(ConfigError, match=r"unknown augmentation settings \['contrast'\]"):
        load_classifier_config(None, augmentation={"contrast": 0.2})
    for bad in ({"val_fraction": 1.0}, {"input_size": 16}, {"lr": "fast"}, {"steps": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            load_classifier_config(None, **bad)


def test_a_bad_augmentation_in_a_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\naugmentation:\n  shift: 0.05\n  contrast: 0.2\n")
    with pytest.raises(ConfigError) as caught:
        load_classifier_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line 4: unknown augmentation settings ['contrast']")
    assert "no intensity augmentation, on purpose" in message
    with pytest.raises(ConfigError, match=r"augmentation scale must be a number in \[0.0, 0.5\]"):
        Augmentation(scale=0.7)
