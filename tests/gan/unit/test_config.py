"""The UNIT config: the published defaults (also in jobs/configs/unit.yaml), and its settings
checked through the training config."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmonize.errors import ConfigError
from harmonize.experiments.packaged import config_path
from harmonize.gan.unit.config import LOSS_WEIGHTS, UNITConfig
from harmonize.training.config import TrainConfig, load_train_config

TINY = {"ngf": 8, "ndf": 8, "n_blocks": 2, "n_shared_blocks": 1, "n_layers_d": 2}


def test_config_defaults_are_the_published_recipe_and_checked_through_training() -> None:
    config = UNITConfig()
    assert (config.ngf, config.ndf, config.n_blocks, config.n_layers_d, config.n_scales_d) == (
        64,
        64,
        4,
        4,
        3,
    )
    assert [getattr(config, name) for name in LOSS_WEIGHTS] == [1.0, 10.0, 0.01, 10.0, 0.01]
    assert (config.lr, config.beta1, config.beta2, config.weight_decay) == (1e-4, 0.5, 0.999, 1e-4)
    assert (config.lr_gamma, config.gan_loss, config.lr_step_size) == (0.5, "least_squares", None)
    with pytest.raises(ConfigError, match=r"\['lambda_foo'\]"):
        load_train_config(method="unit", model={"lambda_foo": 1.0})
    assert TrainConfig(method="unit", model=TINY).model == TINY


def test_published_yaml_holds_the_defaults_and_the_quick_yaml_is_valid() -> None:
    configs = Path(__file__).resolve().parents[3] / "jobs" / "configs"
    published = load_train_config(str(configs / "unit.yaml"))
    assert published.method == "unit"
    assert UNITConfig.from_dict(published.model) == UNITConfig()
    quick = load_train_config(config_path("unit-cpu-quick"))  # packaged
    assert quick.method == "unit" and quick.crop_size == 128
    UNITConfig.from_dict(quick.model)  # raises on a bad setting
