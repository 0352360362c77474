"""The one device picker."""

from __future__ import annotations

import torch

from harmonize.device import pick_device


def test_an_explicit_device_wins_and_the_default_follows_cuda() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    expected = (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    assert pick_device() == expected
