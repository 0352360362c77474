"""Site profiles: YAML round trips and every bad value refused with one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harmonize.errors import ConfigError
from harmonize.synth import (
    PROFILES,
    load_profile,
    profile_from_dict,
    profile_from_yaml,
    profile_to_dict,
    profile_to_yaml,
)

from conftest import REAL_PNG_DIR

REAL_PNGS = REAL_PNG_DIR
MATRIX = 256


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_yaml_round_trip(name: str, tmp_path: Path) -> None:
    profile = PROFILES[name]
    assert profile_from_yaml(profile_to_yaml(profile)) == profile
    path = tmp_path / "site.yaml"
    path.write_text(profile_to_yaml(dataclasses.replace(profile, name="custom")))
    assert load_profile(str(path)) == dataclasses.replace(profile, name="custom")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bits_stored": 11}, "bits_stored must be one of 10, 12, 14, 16, got 11"),
        ({"photometric": "RGB"}, "photometric must be one of MONOCHROME1, MONOCHROME2, got 'RGB'"),
        ({"transfer_syntax": "jpeg-lossy"}, "or their UIDs, got 'jpeg-lossy'"),
        ({"response": {"kind": "cubic"}}, "response kind must be one of gamma, log, sigmoid, got"),
        ({"response": {"kind": "gamma", "gamma": -1}}, "gamma must be a number in [0.01, 10]"),
        ({"response": {"kind": "log", "low": 3, "high": 1}}, "high (1) must be greater"),
        ({"window": {"center": 100, "width": 0}}, "window width must be a number in [1, "),
        ({"noise": {"photons_per_pixel": "many"}}, "photons_per_pixel must be a number >= 1.0"),
        ({"matrix": 10}, "matrix must be an integer in [64, 8192], got 10"),
        ({"colour": "blue"}, "unknown site profile settings ['colour']"),
    ],
)
def test_bad_profile_value_raises_config_error(change: dict, message: str) -> None:
    raw = {**profile_to_dict(PROFILES["shenzhen-like"]), **change}
    with pytest.raises(ConfigError) as err:
        profile_from_dict(raw)
    assert message in str(err.value)
