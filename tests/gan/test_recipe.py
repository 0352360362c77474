"""What every GAN recipe promises, checked for each method: the discriminator step lowers its
losses and only its own, no discriminator gradient from the generator step, one forward per
wrapped player per step (DDP), losses by name, exact resume from a state dict, and the saved
generator rebuilt from its model config."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from harmonize.errors import ConfigError
from harmonize.gan.cut.networks import build_generator as build_cut_generator
from harmonize.gan.cyclegan.networks import build_generator as build_cyclegan_generator
from harmonize.gan.recipe import GanRecipeBase
from harmonize.gan.unit.networks import build_generator as build_unit_generator

METHODS = ("cyclegan", "unit", "cut")
BUILD_GENERATOR: dict[str, Callable[..., nn.Module]] = {
    "cyclegan": build_cyclegan_generator,
    "unit": build_unit_generator,
    "cut": build_cut_generator,
}
# The source->target network of a recipe, as its generators hold it.
SOURCE_TO_TARGET: dict[str, Callable[..., nn.Module]] = {
    "cyclegan": lambda recipe: recipe.generators.g_ab,
    "unit": lambda recipe: recipe.generators.translator(),
    "cut": lambda recipe: recipe.generators.g_ab,
}
# A term bf16 must keep within 5 %.
BF16_TERM = {"cyclegan": "cycle_a", "unit": "recon_a", "cut": "nce"}
# CycleGAN: a pool full after 2 steps, so swaps happen after the resume point.
RESUME_MODEL: dict[str, dict[str, int]] = {"cyclegan": {"pool_size": 2}, "unit": {}, "cut": {}}


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    """Each test of this module runs once per GAN method."""
    return request.param


def _translations(method: str, recipe: GanRecipeBase, real_a, real_b) -> tuple:
    """The current (fake_a, fake_b) the discriminators judge (CUT, one-sided: no fake_a)."""
    if method == "cut":
        return None, recipe.generators.g_ab(real_a)
    fakes = recipe.generators(real_a, real_b)  # UNIT: from the latent means
    return fakes.fake_a, fakes.fake_b


def _discriminator_losses(recipe: GanRecipeBase) -> list[str]:
    return [name for name in recipe.loss_names if name.startswith("d_")]


def test_discriminator_step_lowers_its_losses_and_leaves_the_generators_alone(
    method, tiny_recipe, toy_batch
) -> None:
    # Deterministic: seeded init, a fixed toy batch, CPU; the discriminators are optimised with
    # the generators held fixed (after three generator steps), on the current fakes (a filling
    # CycleGAN pool returns its input), measured by `evaluate`, which changes nothing. Three
    # Adam steps at the published lr.
    recipe = tiny_recipe(method)
    real_a, real_b = toy_batch(0)
    for _ in range(3):
        recipe.generator_step(real_a, real_b)
    before = recipe.evaluate(real_a, real_b)
    with torch.no_grad():
        fake_a, fake_b = _translations(method, recipe, real_a, real_b)
    for _ in range(3):
        recipe.discriminator_step(real_a, real_b, fake_a, fake_b)
    after = recipe.evaluate(real_a, real_b)
    names = _discriminator_losses(recipe)
    assert names == (["d_b"] if method == "cut" else ["d_a", "d_b"])
    for name in names:
        assert after[name] < before[name], (name, before[name], after[name])
    generator_terms = recipe.loss_names[: recipe.loss_names.index("g_total")]
    untouched = [n for n in generator_terms if not n.startswith("gan_")]
    assert untouched and all(after[n] == before[n] for n in untouched)  # no D in these terms


def test_generator_step_gives_the_discriminators_no_gradient(
    method, tiny_recipe, toy_batch
) -> None:
    recipe = tiny_recipe(method)
    real_a, real_b = toy_batch(1)
    recipe.train_step(real_a, real_b)  # every parameter has been trained once
    d_before = {k: v.clone() for k, v in recipe.discriminators.state_dict().items()}
    g_before = {k: v.clone() for k, v in recipe.generators.state_dict().items()}
    assert all(p.grad is None for p in recipe.discriminators.parameters())  # none kept
    for param in recipe.discriminators.parameters():  # zeros would show any accumulation
        param.grad = torch.zeros_like(param)
    recipe.generator_step(real_a, real_b)
    for name, param in recipe.discriminators.named_parameters():
        assert param.grad is not None and torch.count_nonzero(param.grad) == 0, name
    for name, value in recipe.discriminators.state_dict().items():
        assert torch.equal(value, d_before[name]), name
    changed = [not torch.equal(v, g_before[k]) for k, v in recipe.generators.state_dict().items()]
    assert all(changed)
    recipe.discriminator_step(real_a, real_b, real_a, real_b)  # and D trains again afterwards
    assert all(p.requires_grad for p in recipe.discriminators.parameters())


class _CountingWrapper(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *args):
        self.calls += 1
        return self.module(*args)


def test_each_wrapped_pair_runs_one_forward_per_step(method, tiny_recipe, toy_batch) -> None:
    wrappers: list[_CountingWrapper] = []

    def wrap(module: nn.Module) -> nn.Module:
        wrappers.append(_CountingWrapper(module))
        return wrappers[-1]

    recipe = tiny_recipe(method, wrap=wrap)
    assert [w.module for w in wrappers] == [recipe.generators, recipe.discriminators]
    for step in range(3):
        recipe.train_step(*toy_batch(step))
    assert [w.calls for w in wrappers] == [3, 3]


def test_distributed_data_parallel_training_equals_plain_training(
    method, tiny_recipe, toy_batch, tmp_path
) -> None:
    # DDP (gloo, one process) raises when a wrapped module's forward leaves a parameter without
    # a gradient or runs twice per backward (UNIT's shared blocks run several times in one
    # forward); with one process its averaging is the identity.
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = tiny_recipe(method, wrap=DistributedDataParallel)
        plain = tiny_recipe(method)
        assert isinstance(ddp.generators_train, DistributedDataParallel)
        for step in range(3):
            batch = toy_batch(step)
            assert ddp.train_step(*batch) == plain.train_step(*batch)
    finally:
        dist.destroy_process_group()


def test_losses_are_reported_by_name_and_lower_precision_runs(
    method, tiny_recipe, toy_batch
) -> None:
    real_a, real_b = toy_batch(2)
    recipe = tiny_recipe(method)
    losses = recipe.train_step(real_a, real_b)
    assert (
        tuple(losses) == recipe.loss_names
        and losses.keys() == recipe.evaluate(*toy_batch(3)).keys()
    )
    assert all(isinstance(v, float) and np.isfinite(v) and v > 0 for v in losses.values())
    total = recipe.loss_names.index("g_total")  # the generator's terms, g_total, then D's
    assert list(recipe.loss_names[total + 1 :]) == _discriminator_losses(recipe)
    parts = sum(losses[name] for name in recipe.loss_names[:total])
    assert losses["g_total"] == pytest.approx(parts, rel=1e-6)
    bf16 = tiny_recipe(method, precision="bf16", channels_last=True).train_step(real_a, real_b)
    assert all(isinstance(v, float) and np.isfinite(v) for v in bf16.values())
    term = BF16_TERM[method]
    assert bf16[term] == pytest.approx(losses[term], rel=0.05)


def test_resume_from_a_state_dict_continues_exactly(method, tiny_recipe, toy_batch) -> None:
    batches = [toy_batch(seed) for seed in range(6)]
    model = RESUME_MODEL[method]
    straight = tiny_recipe(method, model=model, steps=6)
    expected = [straight.train_step(*batch) for batch in batches]

    first = tiny_recipe(method, model=model, steps=6)
    for batch in batches[:3]:
        first.train_step(*batch)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)  # plain values only
    resumed = tiny_recipe(method, model=model, steps=6, seed=123)  # all comes from the state
    resumed.load_state_dict(state)
    assert resumed.step == 3
    assert [resumed.train_step(*batch) for batch in batches[3:]] == expected[3:]
    for ours, theirs in zip(
        resumed.state_dict().values(), straight.state_dict().values(), strict=True
    ):
        _assert_same(ours, theirs)


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_loading_a_state_of_another_architecture_is_a_config_error(method, tiny_recipe) -> None:
    state = tiny_recipe(method).state_dict()
    with pytest.raises(ConfigError, match="model settings"):
        tiny_recipe(method, model={"ngf": 16}).load_state_dict(state)


def test_saved_generator_rebuilds_from_its_model_config(method, tiny_recipe, toy_batch) -> None:
    recipe: GanRecipeBase = tiny_recipe(method)
    recipe.train_step(*toy_batch(3))
    weights = recipe.generator_state()
    assert all(t.device.type == "cpu" for t in weights.values())
    generator = BUILD_GENERATOR[method]({**recipe.model_config(), "load_size": 286})
    assert generator.state_dict().keys() == weights.keys()
    generator.load_state_dict(weights)
    x = toy_batch(4)[0]
    with torch.no_grad():
        assert torch.equal(generator(x), SOURCE_TO_TARGET[method](recipe)(x))
    next(iter(weights.values())).add_(1.0)  # a copy: changing it leaves the recipe alone
    assert not torch.equal(
        next(iter(weights.values())), next(iter(recipe.generator_state().values()))
    )


def test_fused_adam_makes_the_same_updates_as_the_default(method, tiny_recipe, toy_batch) -> None:
    # The fused optimizer (training's choice on CUDA) is the same Adam, up to rounding.
    plain, fused = tiny_recipe(method), tiny_recipe(method, fused_optimizer=True)
    assert fused.optimizer_g.defaults["fused"] and not plain.optimizer_g.defaults.get("fused")
    for seed in (1, 2):
        a, b = plain.train_step(*toy_batch(seed)), fused.train_step(*toy_batch(seed))
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    # Weights agree to within two Adam steps (lr 2e-4 each): where a gradient is ~0 (a bias
    # before instance norm) rounding decides the sign of Adam's step in either implementation.
    for name, weight in plain.generators.state_dict().items():
        torch.testing.assert_close(fused.generators.state_dict()[name], weight, rtol=0, atol=8e-4)


def test_cuda_graphs_need_compile_and_a_gpu(tiny_recipe) -> None:
    with pytest.raises(ConfigError, match="cuda_graphs needs compile on and a CUDA device"):
        tiny_recipe("cyclegan", cuda_graphs=True)
    with pytest.raises(ConfigError, match="cuda_graphs needs compile on"):
        tiny_recipe("cyclegan", cuda_graphs=True, compile=True)  # on a CPU


def test_the_fakes_a_generator_step_hands_on_are_copies_under_cuda_graphs(
    tiny_recipe, toy_batch
) -> None:
    # Under CUDA graphs a network's next replay overwrites its outputs: what the generator
    # step hands to the discriminator step (and so to the image pools) must be copies. The
    # copy is the only difference (cuda_graphs itself needs a GPU: tests/gan/test_cuda.py).
    recipe = tiny_recipe("cyclegan")
    recipe.cuda_graphs = True
    real_a, real_b = toy_batch(5)
    outputs: list[torch.Tensor] = []
    hook = recipe.generators.g_ab.register_forward_hook(lambda m, i, out: outputs.append(out))
    copied, _ = recipe.generator_step(real_a, real_b)
    recipe.cuda_graphs = False
    shared, _ = recipe.generator_step(real_a, real_b)  # without graphs: no copy is made
    hook.remove()
    # g_ab runs twice a step, first on [real_a; real_b]: fake_b, then the identity image.
    first, second = outputs[0], outputs[2]
    assert torch.equal(copied.fake_b, first[:1]) and not copied.fake_b.requires_grad
    assert copied.fake_b.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
    assert shared.fake_b.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()
