"""The shared field checks and the one YAML loader: one line naming the file, line and key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from harmonize.errors import ConfigError
from harmonize.validate import (
    Bounded,
    FieldError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_text,
    from_mapping,
    load_config,
    read_yaml,
)


@dataclass(frozen=True)
class _Inner:
    depth: int = 2

    def __post_init__(self) -> None:
        check_int("inner", "depth", self.depth, low=1)


@dataclass(frozen=True)
class _Settings:
    steps: int = 10
    rate: float = 0.5
    kind: str = "a"
    inner: Any = field(default_factory=_Inner)

    def __post_init__(self) -> None:
        check_int("demo", "steps", self.steps, low=1)
        object.__setattr__(self, "rate", check_number("demo", "rate", self.rate, low=0, high=1))
        check_choice("demo", "kind", self.kind, ("a", "b"))
        object.__setattr__(self, "inner", from_mapping(_Inner, self.inner, "inner"))


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (lambda v: check_int("demo", "n", v, low=1), 0, "demo n must be an integer >= 1, got 0"),
        (lambda v: check_int("demo", "n", v, low=1), True, "an integer >= 1, got True"),
        (lambda v: check_int("demo", "n", v, low=1, high=3), 4, r"an integer in \[1, 3\], got 4"),
        (lambda v: check_number("demo", "x", v, low=0, low_open=True), 0.0, "a number > 0, got"),
        (lambda v: check_number("demo", "x", v), float("nan"), "a number, got nan"),
        (lambda v: check_number("demo", "x", v, high=1, high_open=True), 1, r"a number < 1"),
        (lambda v: check_bool("demo", "b", v), "yes", "must be true or false, got 'yes'"),
        (lambda v: check_choice("demo", "c", v, ("x", "y")), "z", "must be one of x, y"),
        (lambda v: check_text("demo", "t", v), " ", "must be a non-empty string"),
    ],
)
def test_checks_name_the_setting_the_range_and_the_value(check, value, message) -> None:
    with pytest.raises(FieldError, match=message) as info:
        check(value)
    assert isinstance(info.value, ConfigError)


def test_checks_return_normalised_values() -> None:
    assert check_number("demo", "lr", "1e-3") == 0.001  # PyYAML reads unquoted 1e-3 as text
    assert check_int("demo", "n", 3, low=1, high=3) == 3
    assert check_bool("demo", "b", False) is False


def test_defaults_overrides_and_sections(tmp_path) -> None:
    assert load_config(_Settings, what="demo") == _Settings()
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\ninner:\n  depth: 4\n")
    config = load_config(_Settings, path, what="demo", overrides={"steps": None, "rate": "0.25"})
    assert config == _Settings(steps=5, rate=0.25, inner=_Inner(4))
    merged = load_config(
        _Settings, path, what="demo", overrides={"inner": {"depth": 7}}, sections=("inner",)
    )
    assert merged.inner == _Inner(7) and merged.steps == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: 5\nrat: 1\n", r"c.yaml, line 2: unknown demo settings \['rat'\]; known: "),
        ("steps: 5\nkind: c\n", "c.yaml, line 2: demo kind must be one of a, b, got 'c'"),
        ("inner:\n  depth: 0\n", "c.yaml, line 2: inner depth must be an integer >= 1, got 0"),
        ("inner:\n  width: 3\n", r"c.yaml, line 2: unknown inner settings \['width'\]"),
        ("steps: [1\n", r"c.yaml, line 2: not valid YAML \("),
        ("- 1\n- 2\n", "c.yaml: must hold a mapping of setting: value, got list"),
    ],
)
def test_errors_are_one_line_naming_file_line_and_key(tmp_path, text, message) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(_Settings, path, what="demo")
    assert "\n" not in str(info.value)


def test_a_missing_file_says_so(tmp_path) -> None:
    with pytest.raises(ConfigError, match='cannot read ".*nope.yaml"'):
        read_yaml(tmp_path / "nope.yaml")


@dataclass(frozen=True)
class Blur(Bounded):
    sigma: float = 1.0
    kind: ClassVar[str] = "blur"
    bounds: ClassVar[dict[str, tuple[float, float]]] = {"sigma": (0, 5)}


def test_bounded_checks_each_declared_field_and_stores_a_float() -> None:
    assert Blur(sigma="1e-3").sigma == 0.001  # type: ignore[arg-type]  # YAML 1.1's text
    with pytest.raises(FieldError, match=r"^blur sigma must be a number in \[0, 5\], got 9$"):
        Blur(sigma=9)
