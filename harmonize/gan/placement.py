"""Where and how a GAN recipe's networks run: device, precision, memory format, compilation and
CUDA graphs (``GanRecipeBase`` calls ``place_networks`` once, after initialising the weights).

A compiled network is only known to compile at its first call: ``first_compiled_call`` runs the
first step so that a compiler that cannot work here (no C++ compiler, no Triton, an operator
inductor cannot lower) costs a warning and an eager run, never the run.

Example::

    placement = place_networks(generators, discriminators, device="cuda", precision="bf16",
                               channels_last=True, compile=True, cuda_graphs=False)
    with placement.autocast():
        fakes = generators(placement.prepare(real_a), placement.prepare(real_b))
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from harmonize.errors import ConfigError

T = TypeVar("T")
logger = logging.getLogger(__name__)


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


def compile_failed(err: BaseException) -> bool:
    """Whether ``err`` says that torch.compile could not compile (rather than that the model's
    own code failed, which it would eagerly too)."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    return isinstance(err, TorchDynamoException | CppCompileError | InvalidCxxCompiler)


def first_compiled_call(
    call: Callable[[], T], modules: Sequence[nn.Module], stateful: Any
) -> tuple[T, bool]:
    """``call()`` (the first step of networks compiled by ``place_networks``) and True; when
    compiling fails, every network of ``modules`` is returned to eager execution,
    ``stateful`` (a recipe: ``state_dict`` / ``load_state_dict``) gets back the state it had
    before (nothing half-done remains: one player's optimizer may already have stepped), and
    ``call()`` runs again eagerly (its result and False); the compiler's error goes to the log
    as a warning."""
    saved = copy.deepcopy(stateful.state_dict())
    try:
        return call(), True
    except Exception as err:
        if not compile_failed(err):
            raise
        logger.warning(
            "torch.compile could not compile the networks here (%s); training goes on without "
            "compiling (set compile: false to skip the attempt)",
            " ".join(str(err).split())[:300],
            exc_info=True,
        )
    for module in modules:
        for net in module.children():
            net._compiled_call_impl = None  # what Module.compile set: back to the eager call
    stateful.load_state_dict(saved)
    return call(), False
