"""The classifier's network: ResNet-18's layout for one grey channel and one logit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harmonize.classifier.config import BLOCKS, MIN_INPUT_SIZE
from harmonize.errors import ModelError


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNetClassifier(nn.Module):
    """ResNet-18's layout for one grey channel and one logit: a 7x7 stride-2 stem and max pool,
    four stages of BasicBlocks (``width`` x 1, 2, 4, 8 channels, stride 2 from the second),
    global average pooling and a linear head. ``forward`` returns (N,) logits."""

    def __init__(self, width: int = 64, blocks: Sequence[int] = BLOCKS) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        in_channels = width
        for index, n_blocks in enumerate(blocks):
            channels = width * 2**index
            layers = []
            for block in range(n_blocks):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(BasicBlock(in_channels, channels, stride))
                in_channels = channels
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x)).mean(dim=(2, 3))
        return self.head(features)[:, 0]


def build_classifier(model_config: Mapping[str, Any]) -> ResNetClassifier:
    """The network described by a model config (``ClassifierConfig.model_config()``).

    Raises:
        ModelError: unknown keys or invalid values.
    """
    known = {"blocks", "width", "input_size"}
    unknown = sorted(set(model_config) - known)
    if unknown:
        raise ModelError(f"unknown classifier model settings {unknown}; known: {sorted(known)}")
    try:
        width = int(model_config["width"])
        blocks = [int(b) for b in model_config.get("blocks", BLOCKS)]
        input_size = int(model_config["input_size"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"classifier model config {dict(model_config)} is invalid: {err}") from err
    if width < 1 or input_size < MIN_INPUT_SIZE or not blocks or min(blocks) < 1:
        raise ModelError(f"classifier model config {dict(model_config)} is out of range")
    return ResNetClassifier(width, blocks)


def probabilities(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """P(finding) of a preprocessed (N, 1, S, S) batch: eval mode (batch norm with its running
    statistics, so a score never depends on the rest of the batch), fp32, no autograd."""
    model.eval()
    with torch.inference_mode():
        return torch.sigmoid(model(batch.float()).float())
