"""The one device picker: where torch code runs when the caller does not say."""

from __future__ import annotations

import torch


def pick_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` as given; else the current CUDA device when there is one; else the CPU.

    Example::

        model.to(pick_device())          # cuda:0 on a GPU worker, cpu elsewhere
        pick_device("cpu")               # torch.device("cpu")
    """
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
