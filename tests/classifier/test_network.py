"""The classifier's network has ResNet-18's layout; model configs are checked."""

from __future__ import annotations

import pytest
import torch

from harmonize.classifier.network import ResNetClassifier, build_classifier
from harmonize.errors import ModelError


def test_the_network_has_resnet18s_layout() -> None:
    # torchvision's resnet18 has 11 689 512 parameters: 3 input channels (9 408 stem weights)
    # and 1000 classes (513 000 head weights). One channel and one logit: 3 136 and 513.
    model = ResNetClassifier(width=64)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512 - 9_408 + 3_136 - 513_000 + 513
    assert [len(list(stage.children())) for stage in model.stages] == [2, 2, 2, 2]
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2,)
    with pytest.raises(ModelError, match="unknown"):
        build_classifier({"width": 8, "input_size": 32, "depth": 50})
