"""Model files: the one writer and the one reader of every saved model, SHA-256 checked.

A model lives under a folder or s3:// prefix as one JSON file, ``harmonizer.json`` (a
harmonization method) or ``classifier.json`` (the target-site classifier)::

    {"format_version": 1, "method": "cyclegan", "code_version": "...",
     "state": {...}, "card": {...}}

``state`` is what decides the model's output: the config and fitted values of a classical method,
or a neural network's config plus ``weights_file`` and ``weights_sha256`` (the network itself is
``weights.safetensors`` beside the JSON). ``card`` says how the model was made (data, counts,
times, validation) and never changes what the model does. Loading never unpickles code.

The model hash in a manifest (``model_hash``, ``classifier_hash``) covers the method and the state
only, never the card: an identical re-fit gets the same hash, so a re-run skips what is done,
and new weights always get a new one.

Example::

    uri = write_model("models/cg", method="cyclegan", state={"model_config": cfg},
                      weights=generator.state_dict(), card=card)
    model = read_model("models/cg", expected_method="cyclegan")
    generator.load_state_dict(model.weights)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harmonize import __version__
from harmonize.errors import HarmonizeError, ModelError
from harmonize.io.storage import Storage, join

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT_VERSION = 1
HARMONIZER_FILE = "harmonizer.json"
CLASSIFIER_FILE = "classifier.json"
WEIGHTS_FILE = "weights.safetensors"

#: Each model file: what the messages call it, what it holds, how to make one when none is there.
_KINDS = {
    HARMONIZER_FILE: (
        "model",
        "harmonizer",
        "train one first, e.g. `harmonize train histogram --target TARGET_URI --out {uri}`",
    ),
    CLASSIFIER_FILE: (
        "classifier",
        "classifier",
        "train one first: `harmonize train classifier --archive TARGET_URI --labels LABELS_URI "
        "--out {uri}`",
    ),
}


def model_hash(method: str, state: Mapping[str, Any]) -> str:
    """A short hash of what decides a model's output: its method and its state (for neural
    models the weights' SHA-256); the card (times, durations, data descriptions) is left out."""
    text = json.dumps(
        {"format_version": FORMAT_VERSION, "method": method, "state": state}, sort_keys=True
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ModelFile:
    """A model read back: where it is, what it is, and (neural models) its checked weights."""

    uri: str  # the model's folder or prefix
    method: str
    state: dict[str, Any]
    card: dict[str, Any]
    model_hash: str
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def model_config(self) -> dict[str, Any]:
        """A neural model's network config (ModelError when the file has none)."""
        try:
            return dict(self.state["model_config"])
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(
                f'the {self.method} model at "{self.uri}" has no model config'
            ) from err


def load_weights(network: nn.Module, model: ModelFile) -> nn.Module:
    """``network`` with the model's checked weights loaded (ModelError when they do not fit
    the config that built it)."""
    if model.weights is None:
        raise ModelError(f'the {model.method} model under "{model.uri}" has no weights file')
    try:
        network.load_state_dict(model.weights)
    except RuntimeError as err:
        raise ModelError(f"the {model.method} weights do not fit its config: {err}") from err
    return network


def write_model(
    out_uri: str,
    *,
    method: str,
    state: Mapping[str, Any],
    card: Mapping[str, Any] | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
    storage: Storage | None = None,
    file_name: str = HARMONIZER_FILE,
) -> str:
    """Write a model under ``out_uri``; returns the JSON file's URI.

    With ``weights``, ``weights.safetensors`` is written first and its name and SHA-256 are
    added to the state, so the JSON (written last, whole) never points at weights that are not
    there yet.
    """
    store = storage or Storage()
    state = dict(state)
    if weights is not None:
        from safetensors.torch import save as save_safetensors

        blob = save_safetensors({k: v.detach().cpu().contiguous() for k, v in weights.items()})
        store.write(join(out_uri, WEIGHTS_FILE), blob)
        state.update(weights_file=WEIGHTS_FILE, weights_sha256=hashlib.sha256(blob).hexdigest())
    doc = {
        "format_version": FORMAT_VERSION,
        "method": method,
        "code_version": __version__,
        "state": state,
        "card": dict(card or {}),
    }
    target = join(out_uri, file_name)
    store.write_text(target, json.dumps(doc, indent=1, sort_keys=True))
    return target


def write_network(
    out_uri: str,
    method: str,
    model_config: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor],
    **options: Any,
) -> str:
    """``write_model`` for a network: its state is the ``model_config`` that rebuilds it, and
    its weights; ``options`` are ``write_model``'s ``card``, ``storage`` and ``file_name``."""
    state = {"model_config": dict(model_config)}
    return write_model(out_uri, method=method, state=state, weights=weights, **options)


def _folder_of(uri: str, file_name: str) -> str:
    return uri[: -len(file_name)].rstrip("/") if uri.endswith(file_name) else uri.rstrip("/")


def _read_document(folder: str, file_name: str, store: Storage) -> dict[str, Any]:
    noun, kind, how = _KINDS[file_name]
    path = join(folder, file_name)
    try:
        text = store.read_text(path)
    except HarmonizeError as err:
        for other, (_, other_kind, _) in _KINDS.items():
            if other != file_name and store.exists(join(folder, other)):
                raise ModelError(
                    f'"{folder}" holds a {other_kind} ({other}), not a {kind}; pass the --out '
                    f"of the command that trained the {kind}"
                ) from err
        raise ModelError(f'no {noun} at "{folder}" ({err}); {how.format(uri=folder)}') from err
    try:
        doc = json.loads(text)
        if not isinstance(doc["method"], str) or not isinstance(doc["state"], dict):
            raise TypeError("method must be a name and state a mapping")
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f'"{path}" is not a harmonize {noun} file: {err}') from err
    if doc.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f'"{path}" has format version {doc.get("format_version")}, this harmonize reads '
            f"{FORMAT_VERSION}; retrain the {noun} with this version"
        )
    return doc


def _read_weights(folder: str, method: str, state: Mapping[str, Any], store: Storage) -> Any:
    from safetensors.torch import load as load_safetensors

    try:
        blob = store.read(join(folder, str(state.get("weights_file", WEIGHTS_FILE))))
        expected = state["weights_sha256"]
    except KeyError as err:
        raise ModelError(f'the {method} model file under "{folder}" is malformed: {err}') from err
    except HarmonizeError as err:
        raise ModelError(f"cannot read the {method} weights: {err}") from err
    if hashlib.sha256(blob).hexdigest() != expected:
        raise ModelError(
            f'the {method} weights under "{folder}" do not match their recorded SHA-256: the '
            "model folder was changed or copied partially; copy it again or retrain"
        )
    try:
        return load_safetensors(blob)
    except Exception as err:  # safetensors raises its own types for a damaged file
        raise ModelError(f'the {method} weights under "{folder}" cannot be read: {err}') from err


def read_model(
    uri: str,
    storage: Storage | None = None,
    *,
    file_name: str = HARMONIZER_FILE,
    expected_method: str | None = None,
) -> ModelFile:
    """The model saved under ``uri`` (its folder, or the JSON file's own URI). Weights named in
    its state are read and must match their recorded SHA-256.

    Raises:
        ModelError: nothing usable is there (or another kind of model), another method than
            ``expected_method``, another format version, or changed weights.
    """
    store = storage or Storage()
    folder = _folder_of(uri, file_name)
    doc = _read_document(folder, file_name, store)
    method, state = doc["method"], doc["state"]
    if expected_method is not None and method != expected_method:
        raise ModelError(
            f'"{folder}" holds a "{method}" model, not a {expected_method}'
            if file_name == CLASSIFIER_FILE
            else f'"{folder}" holds a {method} model, but --method {expected_method} was asked'
        )
    weights = _read_weights(folder, method, state, store) if "weights_sha256" in state else None
    card = doc.get("card") or {}
    return ModelFile(folder, method, state, card, model_hash(method, state), weights)
