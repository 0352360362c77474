"""The GAN model configs' checks: every bad setting is a ConfigError that names the setting, the
expected range and the bad value; unknown settings are named with the known ones; numbers given
as text by YAML 1.1 are stored as floats."""

from __future__ import annotations

from typing import Any

import pytest

from harmonize.errors import ConfigError
from harmonize.gan.cut.config import CUTConfig
from harmonize.gan.cyclegan.config import CycleGANConfig
from harmonize.gan.unit.config import UNITConfig

CONFIGS: dict[str, type[Any]] = {"cyclegan": CycleGANConfig, "unit": UNITConfig, "cut": CUTConfig}
# A loss weight of each method.
WEIGHT = {"cyclegan": "lambda_cycle", "unit": "lambda_cycle", "cut": "lambda_nce"}
BAD_SETTINGS = [
    ("cyclegan", {"n_blocks": -1}, r"cyclegan n_blocks must be an integer >= 0, got -1"),
    ("cyclegan", {"ngf": True}, r"cyclegan ngf must be an integer >= 1, got True"),
    ("cyclegan", {"beta1": 1.0}, r"cyclegan beta1 must be a number in \[0, 1\), got 1.0"),
    ("cyclegan", {"lr": 0}, r"cyclegan lr must be a number > 0, got 0"),
    ("cyclegan", {"lambda_cycle": "x"}, r"cyclegan lambda_cycle must be a number >= 0, got 'x'"),
    ("cyclegan", {"gan_loss": "wasserstein"}, r"gan_loss must be one of least_squares, vanilla"),
    (
        "unit",
        {"n_blocks": 2, "n_shared_blocks": 3},
        r"unit n_shared_blocks must be at most n_blocks \(2\), got 3",
    ),
    ("unit", {"lr_gamma": 0.0}, r"unit lr_gamma must be a number in \(0, 1\], got 0.0"),
    ("unit", {"lr_step_size": 0}, r"unit lr_step_size must be an integer >= 1, got 0"),
    ("unit", {"weight_decay": -1e-4}, r"unit weight_decay must be a number >= 0, got -0.0001"),
    ("unit", {"gan_loss": "wasserstein"}, r"unit gan_loss must be one of least_squares, vanilla"),
    ("cut", {"nce_t": -0.1}, r"cut nce_t must be a number > 0, got -0.1"),
    ("cut", {"gan_loss": "wasserstein"}, r"cut gan_loss must be one of least_squares, vanilla"),
]


@pytest.mark.parametrize(("method", "settings", "message"), BAD_SETTINGS)
def test_bad_settings_are_config_errors_that_name_them(method, settings, message) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        CONFIGS[method].from_dict(settings)
    assert getattr(raised.value, "key", None) in settings  # a loader can point at its line


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_unknown_settings_are_named_with_the_known_ones(method) -> None:
    with pytest.raises(ConfigError, match=rf"unknown {method} model settings \['ngff'\]; known"):
        CONFIGS[method].from_dict({"ngf": 8, "ngff": 8})
    assert CONFIGS[method].from_dict(None) == CONFIGS[method]()


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_numbers_are_stored_as_floats(method) -> None:
    config = CONFIGS[method].from_dict({"lr": "1e-3", WEIGHT[method]: 10})
    assert config.lr == 0.001 and isinstance(getattr(config, WEIGHT[method]), float)
