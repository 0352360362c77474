"""Shared field checks and the one YAML -> frozen, validated dataclass loader.

Every configuration (training, classifier, GAN model sections, classical methods, experiments,
site profiles, job files) is a frozen dataclass whose ``__post_init__`` checks its fields with the
``check_*`` functions here. ``load_config`` reads a YAML file (local or s3://), rejects unknown
keys, applies command-line overrides and builds the dataclass; any error becomes one line that
names the file, the line and the key::

    harmonize: error: jobs/configs/cyclegan.yaml, line 7: training crop_size must be a
    multiple of 4 (the generator halves it twice), got 250

Example::

    config = load_config(TrainConfig, "train.yaml", what="training", overrides={"steps": 10})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from harmonize.errors import ConfigError

if TYPE_CHECKING:
    from harmonize.io.storage import Storage

T = TypeVar("T")


class FieldError(ConfigError):
    """A ConfigError about one setting; ``key`` names it so a loader can point at its line."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


# -- field checks ----------------------------------------------------------------------------------
def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return ""


def _in_range(
    value: float, low: float | None, high: float | None, low_open: bool, high_open: bool
) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return False
    return not (high is not None and (value >= high if high_open else value > high))


def check_int(
    owner: str, name: str, value: Any, *, low: int | None = None, high: int | None = None
) -> int:
    """``value`` if it is an integer (not a bool) in [low, high], else a FieldError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not _in_range(value, low, high, False, False)
    ):
        expected = " ".join(filter(None, ("an integer", _range_text(low, high, False, False))))
        raise FieldError(f"{owner} {name} must be {expected}, got {value!r}", name)
    return value


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the range, else a FieldError. Also accepts YAML 1.1's
    unquoted ``1e-3``, which PyYAML reads as text."""
    number: float | None = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if (
        number is None
        or not math.isfinite(number)
        or not _in_range(number, low, high, low_open, high_open)
    ):
        expected = " ".join(filter(None, ("a number", _range_text(low, high, low_open, high_open))))
        raise FieldError(f"{owner} {name} must be {expected}, got {value!r}", name)
    return number


def check_bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"{owner} {name} must be true or false, got {value!r}", name)
    return value


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        listed = ", ".join(str(c) for c in choices)
        raise FieldError(f"{owner} {name} must be one of {listed}, got {value!r}", name)
    return value


def check_text(owner: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(f"{owner} {name} must be a non-empty string, got {value!r}", name)
    return value


def set_field(instance: object, name: str, value: Any) -> None:
    """Store a normalised value on a frozen dataclass from its ``__post_init__``."""
    object.__setattr__(instance, name, value)


@dataclass(frozen=True)
class Bounded:
    """A frozen dataclass whose number fields are declared with their ranges: ``bounds`` maps a
    field's name to its (low, high); each is checked and stored as a float on construction
    (None, for an optional field, stays None), errors naming ``what()`` (the class's ``kind``)
    and the field."""

    bounds: ClassVar[dict[str, tuple[float, float]]] = {}

    def what(self) -> str:
        return str(getattr(self, "kind", type(self).__name__))

    def __post_init__(self) -> None:
        for name, (low, high) in self.bounds.items():
            if getattr(self, name) is None:
                continue
            set_field(
                self, name, check_number(self.what(), name, getattr(self, name), low=low, high=high)
            )


# -- mappings -> dataclasses -----------------------------------------------------------------------
def field_names(cls: type) -> list[str]:
    return sorted(f.name for f in fields(cls))


def check_keys(values: Mapping[str, Any], known: Sequence[str], what: str, hint: str = "") -> None:
    """A FieldError naming the first unknown key (and every unknown key) of ``values``."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise FieldError(
            f"unknown {what} settings {unknown}; known: {sorted(known)}{hint}", unknown[0]
        )


def from_mapping(cls: type[T], values: Any, what: str, hint: str = "") -> T:
    """``cls(**values)`` for a plain mapping (a YAML section), unknown keys rejected."""
    if isinstance(values, cls):
        return values
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{what} settings must be a mapping of setting: value, got {values!r}")
    assert is_dataclass(cls)
    check_keys(values, field_names(cls), what, hint)
    return cls(**values)


# -- YAML ------------------------------------------------------------------------------------------
def _key_lines(node: Any, prefix: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    """``{"a.b": line, "b": line}`` of every mapping key in a composed YAML node (1-based lines;
    a bare name maps to its first occurrence)."""
    import yaml

    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                path = f"{prefix}{key_node.value}"
                out.setdefault(path, key_node.start_mark.line + 1)
                out.setdefault(str(key_node.value), key_node.start_mark.line + 1)
                _key_lines(value_node, path + ".", out)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _key_lines(item, prefix, out)
    return out


class YamlDocument:
    """A parsed YAML mapping with the line of each key, for errors that point at the file."""

    def __init__(self, text: str, source: str) -> None:
        import yaml

        self.source = source
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{source}{where}: not valid YAML ({problem})") from err
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source}: must hold a mapping of setting: value, got {type(data).__name__}"
            )
        self.data: dict[str, Any] = data
        self.lines = _key_lines(node) if node is not None else {}

    def error(self, err: ConfigError) -> ConfigError:
        """``err`` as one line that names this file and, when known, the line of its key."""
        key = getattr(err, "key", None)
        line = self.lines.get(key) if key else None
        where = f"{self.source}, line {line}" if line else self.source
        return ConfigError(f"{where}: {err}")


def read_yaml(uri: str | Path, storage: Storage | None = None) -> YamlDocument:
    """The YAML mapping at ``uri`` (local path or s3://), or one line saying why not."""
    from harmonize.io.storage import Storage

    try:
        text = (storage or Storage()).read_text(str(uri))
    except ConfigError:
        raise
    except Exception as err:  # StorageError, UnicodeDecodeError: the file cannot be read
        raise ConfigError(f'cannot read "{uri}": {err}') from err
    return YamlDocument(text, str(uri))


def merge_overrides(
    values: Mapping[str, Any], overrides: Mapping[str, Any], sections: Sequence[str] = ()
) -> dict[str, Any]:
    """``values`` with the overrides that are not None; mapping overrides of ``sections``
    (e.g. ``model``) are merged into that section instead of replacing it."""
    out = dict(values)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in sections and isinstance(value, Mapping):
            out[key] = {**dict(out.get(key) or {}), **value}
        else:
            out[key] = value
    return out


def load_config(
    cls: type[T],
    uri: str | Path | None = None,
    storage: Storage | None = None,
    *,
    what: str,
    overrides: Mapping[str, Any] | None = None,
    sections: Sequence[str] = (),
) -> T:
    """A validated ``cls`` from a YAML file (local or s3://; None: the defaults) and overrides.

    Overrides whose value is None are ignored (unset command-line options); mapping overrides
    of ``sections`` are merged into the YAML's section. A section given as ``null`` in the YAML
    keeps the dataclass default.

    Raises:
        ConfigError: unreadable or malformed YAML, an unknown key, or an invalid value; one
            line naming the file, the line and the key.
    """
    doc = read_yaml(uri, storage) if uri is not None else None
    values = merge_overrides(doc.data if doc else {}, overrides or {}, sections)
    for section in sections:
        if section in values and values[section] is None:
            values.pop(section)
    try:
        return from_mapping(cls, values, what)
    except ConfigError as err:
        if doc is None:
            raise
        raise doc.error(err) from err
