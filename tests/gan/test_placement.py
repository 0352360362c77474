"""Where the networks run: precision and CUDA graphs checked in one sentence, and a compiler
that cannot work here (no C++ compiler: a real failure of torch.compile, not a mock) costs a
warning and an eager run from the same state, never the run."""

from __future__ import annotations

import logging

import pytest
import torch

from harmonize.errors import ConfigError
from harmonize.gan.placement import compile_failed, place_networks


def test_precision_and_cuda_graphs_are_checked_in_one_sentence() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3))
    with pytest.raises(ConfigError, match='precision must be "bf16" or "fp32", got "fp16"'):
        place_networks(net, device="cpu", precision="fp16", channels_last=False, compile=False,
                       cuda_graphs=False)  # fmt: skip
    with pytest.raises(ConfigError, match="cuda_graphs needs compile on and a CUDA device"):
        place_networks(net, device="cpu", precision="fp32", channels_last=False, compile=True,
                       cuda_graphs=True)  # fmt: skip
    placed = place_networks(net, device="cpu", precision="bf16", channels_last=True,
                            compile=False, cuda_graphs=False)  # fmt: skip
    assert placed.prepare(torch.zeros(1, 1, 4, 4)).is_contiguous(memory_format=torch.channels_last)
    assert placed.autocast().fast_dtype == torch.bfloat16


def test_a_compiler_that_cannot_work_here_falls_back_to_eager_from_the_same_state(
    tiny_recipe, toy_batch, monkeypatch, caplog
) -> None:
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", (None, "/nonexistent/c++"))
    torch._dynamo.reset()  # no kernel compiled by an earlier test may serve this one
    eager, compiled = tiny_recipe("cyclegan"), tiny_recipe("cyclegan", compile=True)
    with caplog.at_level(logging.WARNING, logger="harmonize.gan.placement"):
        for seed in (1, 2):
            batch = toy_batch(seed)
            assert compiled.train_step(*batch) == eager.train_step(*batch)  # bit-equal: eager
    assert "torch.compile could not compile the networks here" in caplog.text
    assert "InvalidCxxCompiler" in caplog.text or "C++ compiler" in caplog.text
    nets = [*compiled.generators.children(), *compiled.discriminators.children()]
    assert all(net._compiled_call_impl is None for net in nets)
    assert compiled.step == eager.step == 2 and compiled.compiled is False  # what really ran
    for name, weight in eager.generators.state_dict().items():
        assert torch.equal(compiled.generators.state_dict()[name], weight), name


def test_the_models_own_errors_are_not_compiler_failures() -> None:
    # (A real compiler failure is the test above's.) The model's own errors surface as they are.
    assert not compile_failed(RuntimeError("shapes do not match"))
    assert not compile_failed(ValueError("a bad crop"))
