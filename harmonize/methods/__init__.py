"""The harmonization methods, found through one registry dict, and model loading by URI."""

from __future__ import annotations

import json
from typing import Any

from harmonize.errors import ConfigError, ModelError
from harmonize.io.storage import Storage, join
from harmonize.methods.base import FORMAT_VERSION, MODEL_FILE, Harmonizer, fingerprint
from harmonize.methods.histogram import HistogramMatching
from harmonize.methods.neural import CycleGANHarmonizer, UNITHarmonizer
from harmonize.methods.nyul import NyulStandardization

# method name -> harmonizer class (the one place a method is looked up by name)
REGISTRY: dict[str, type[Harmonizer]] = {
    cls.method: cls
    for cls in (HistogramMatching, NyulStandardization, CycleGANHarmonizer, UNITHarmonizer)
}


def method_names() -> list[str]:
    return sorted(REGISTRY)


def create_harmonizer(method: str, config: dict[str, Any] | None = None) -> Harmonizer:
    """A new, unfitted classical harmonizer of ``method`` configured from a plain dict (YAML)."""
    if method not in REGISTRY:
        raise ConfigError(f'unknown method "{method}"; choose one of {method_names()}')
    cls = REGISTRY[method]
    if cls.config_class is None:
        raise ConfigError(
            f"{method} is trained, not fitted: `harmonize train {method} --source URI "
            "--target URI --out URI`"
        )
    try:
        cfg = cls.config_class(**(config or {}))
    except TypeError as err:
        raise ConfigError(f"bad {method} config {config}: {err}") from err
    return cls(cfg)  # type: ignore[call-arg]


class LoadedModel:
    """A harmonizer read back from a model URI, with what identifies it in a manifest."""

    def __init__(self, uri: str, harmonizer: Harmonizer, model_hash: str, card: dict[str, Any]):
        self.uri = uri
        self.harmonizer = harmonizer
        self.model_hash = model_hash
        self.card = card


def load_model(
    uri: str,
    storage: Storage | None = None,
    expected_method: str | None = None,
    mode: str = "direct",
) -> LoadedModel:
    """Load the harmonizer saved under ``uri`` (a folder or s3:// prefix holding harmonizer.json).

    Raises:
        ModelError: nothing usable is there, or it holds another method than ``expected_method``.
    """
    store = storage or Storage()
    path = join(uri, MODEL_FILE)
    try:
        text = store.read_text(path)
    except Exception as err:
        raise ModelError(
            f'no model at "{uri}" ({err}); train one first, e.g. '
            f"`harmonize train histogram --target TARGET_URI --out {uri}`"
        ) from err
    try:
        doc = json.loads(text)
        method, state = doc["method"], doc["state"]
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f'"{path}" is not a harmonize model file: {err}') from err
    if doc.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f'"{path}" has format version {doc.get("format_version")}, this harmonize reads '
            f"{FORMAT_VERSION}; retrain the model with this version"
        )
    if method not in REGISTRY:
        raise ModelError(f'"{path}" holds method "{method}", unknown here; known: {method_names()}')
    if expected_method and method != expected_method:
        raise ModelError(
            f'"{uri}" holds a {method} model, but --method {expected_method} was asked'
        )
    harmonizer = REGISTRY[method].from_state(state, lambda name: store.read(join(uri, name)))
    harmonizer.set_mode(mode)
    return LoadedModel(uri, harmonizer, fingerprint(text), doc.get("card", {}))
