"""Where and how a GAN recipe's networks run: device, precision, memory format, compilation and
CUDA graphs (``GanRecipeBase`` calls ``place_networks`` once, after initialising the weights).

Example::

    placement = place_networks(generators, discriminators, device="cuda", precision="bf16",
                               channels_last=True, compile=True, cuda_graphs=False)
    with placement.autocast():
        fakes = generators(placement.prepare(real_a), placement.prepare(real_b))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harmonize.errors import ConfigError


@dataclass(frozen=True)
class Placement:
    """How the networks were placed; ``prepare`` and ``autocast`` place a batch the same way."""

    device: torch.device
    bf16: bool
    memory_format: torch.memory_format
    cuda_graphs: bool

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, non_blocking=True).contiguous(
            memory_format=self.memory_format
        )

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)


def place_networks(
    *modules: nn.Module,
    device: torch.device | str,
    precision: str,
    channels_last: bool,
    compile: bool,
    cuda_graphs: bool,
) -> Placement:
    """Move ``modules`` (each a container of networks) to ``device`` in the memory format and,
    when asked, ``torch.compile`` each network in place (same module, same state_dict keys), in
    ``reduce-overhead`` mode with ``cuda_graphs``: each network's forward and backward then
    replay as CUDA graphs (CUDA and compile only)."""
    if precision not in ("bf16", "fp32"):
        raise ConfigError(f'precision must be "bf16" or "fp32", got "{precision}"')
    placed = torch.device(device)
    if cuda_graphs and not (compile and placed.type == "cuda"):
        raise ConfigError(
            f"cuda_graphs needs compile on and a CUDA device (got compile={compile}, device "
            f"{placed}); turn compile on and train on a GPU, or set cuda_graphs off"
        )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for module in modules:
        module.to(placed)
        module.to(memory_format=memory_format)  # type: ignore[call-overload]
    if compile:
        mode = "reduce-overhead" if cuda_graphs else None
        for module in modules:
            for net in module.children():
                net.compile(mode=mode)
    return Placement(placed, precision == "bf16", memory_format, cuda_graphs)
