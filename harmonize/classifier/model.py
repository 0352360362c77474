"""A trained classifier: saving and loading it (``classifier.json`` + ``weights.safetensors``
through ``models.files``; nothing is unpickled) and scoring display images.

Example::

    scores = load_classifier("s3://models/classifier-sz").score(display_images)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from harmonize.classifier.network import build_classifier, probabilities
from harmonize.classifier.preprocess import classifier_levels, levels_to_model
from harmonize.device import pick_device
from harmonize.errors import ModelError
from harmonize.io.storage import Storage
from harmonize.models.files import CLASSIFIER_FILE, load_weights, read_model, write_network

METHOD = "classifier"
EVAL_BATCH = 64


def save_classifier(
    out_uri: str,
    model_config: dict[str, Any],
    weights: Mapping[str, torch.Tensor],
    card: dict[str, Any] | None = None,
    storage: Storage | None = None,
) -> str:
    """Write ``weights.safetensors`` then ``classifier.json`` (method, model config, the
    weights' SHA-256, the card) under ``out_uri``; returns the JSON's URI."""
    return write_network(
        out_uri,
        METHOD,
        model_config,
        weights,
        card=card,
        storage=storage,
        file_name=CLASSIFIER_FILE,
    )


class Classifier:
    """A trained classifier: display images in, P(finding) out.

    The network runs in eval mode (batch norm with its running statistics), so an image's score
    never depends on the other images of its batch.
    """

    batch_size = EVAL_BATCH

    def __init__(
        self,
        model: nn.Module,
        model_config: Mapping[str, Any],
        card: Mapping[str, Any] | None = None,
        model_hash: str = "",
        uri: str = "",
        device: torch.device | str | None = None,
    ) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.model_config = dict(model_config)
        self.input_size = int(model_config["input_size"])
        self.card = dict(card or {})
        self.model_hash = model_hash  # hash of classifier.json (holds the weights' SHA-256)
        self.uri = uri

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One display image [0, 1] of any size -> (1, S, S) float32 in [-1, 1], on the CPU."""
        return levels_to_model(classifier_levels(image, self.input_size))[None]

    def score_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """P(finding) of a preprocessed (N, 1, S, S) batch in model range: (N,) float32 on the
        classifier's device."""
        size = self.input_size
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (1, size, size):
            raise ModelError(
                f"expected a preprocessed batch of shape (N, 1, {size}, {size}), got "
                f"{tuple(batch.shape)}; use Classifier.preprocess"
            )
        return probabilities(self.model, batch.to(self.device))

    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """P(finding) of display images [0, 1] (any sizes), in batches: float64 (N,) in [0, 1]."""
        out = [np.zeros(0)]
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            batch = torch.stack([self.preprocess(image) for image in chunk])
            out.append(self.score_tensor(batch).double().cpu().numpy())
        return np.concatenate(out)


def load_classifier(uri: str, storage: Storage | None = None) -> Classifier:
    """The classifier saved under ``uri`` (a folder or s3:// prefix holding classifier.json, or
    that file's URI). The weights must match their recorded SHA-256; nothing is unpickled.

    Raises:
        ModelError: nothing usable is there, another kind of model, or changed weights.
    """
    saved = read_model(uri, storage, file_name=CLASSIFIER_FILE, expected_method=METHOD)
    model = load_weights(build_classifier(saved.model_config), saved)
    return Classifier(model, saved.model_config, saved.card, saved.model_hash, saved.uri)
