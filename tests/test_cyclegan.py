"""CycleGAN: networks against the published architecture, the training step's invariants (each
player's step lowers its losses, no discriminator gradient from the generator step, DDP), the
image pool, the LR schedule, and exact resume from a state dict."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from harmonize.errors import ConfigError, ModelError
from harmonize.gan.cyclegan.config import CycleGANConfig
from harmonize.gan.cyclegan.networks import build_generator
from harmonize.gan.cyclegan.recipe import LOSS_NAMES, CycleGANRecipe
from harmonize.gan.layers import PatchDiscriminator, ResnetGenerator, count_parameters, init_normal
from harmonize.gan.pool import ImagePool
from harmonize.gan.schedules import linear_decay

TINY = {"ngf": 8, "ndf": 8, "n_blocks": 2}
GENERATOR_TERMS = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g_total")


def _conv(c_in: int, c_out: int, k: int) -> int:
    """Parameters of a k x k convolution with bias."""
    return c_in * c_out * k * k + c_out


def _resnet_generator_parameters(ngf: int, n_blocks: int, channels: int = 1) -> int:
    """c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf (two 3x3 convs), u2ngf, ungf, c7s1-channels."""
    return (
        _conv(channels, ngf, 7)
        + _conv(ngf, 2 * ngf, 3)
        + _conv(2 * ngf, 4 * ngf, 3)
        + n_blocks * 2 * _conv(4 * ngf, 4 * ngf, 3)
        + _conv(4 * ngf, 2 * ngf, 3)  # a transposed conv has the same count
        + _conv(2 * ngf, ngf, 3)
        + _conv(ngf, channels, 7)
    )


def _patchgan_parameters(ndf: int, n_layers: int, channels: int = 1) -> int:
    """4x4 convs: channels -> ndf -> ndf * min(2^i, 8) for i = 1..n_layers -> 1 (norms: none)."""
    widths = [channels, ndf, *(ndf * min(2**i, 8) for i in range(1, n_layers + 1)), 1]
    return sum(_conv(a, b, 4) for a, b in zip(widths, widths[1:], strict=False))


def _toy_batch(seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth images; site A darker and lower-contrast than site B (a real domain gap)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(2, 1, size + 6, size + 6, generator=g), 7, 1)
    base = (base - base.amin()) / (base.amax() - base.amin())
    real_a = 0.6 * base[:1] - 0.7
    real_b = 1.6 * base[1:] - 0.8
    return real_a, real_b


def _recipe(**overrides) -> CycleGANRecipe:
    model = {**TINY, **overrides.pop("model", {})}
    return CycleGANRecipe(model, steps=overrides.pop("steps", 100), **overrides)


# -- networks --------------------------------------------------------------------------------------
def test_parameter_counts_match_the_published_architecture() -> None:
    generator, discriminator = ResnetGenerator(), PatchDiscriminator()
    assert count_parameters(generator) == _resnet_generator_parameters(64, 9)
    assert count_parameters(discriminator) == _patchgan_parameters(64, 3)
    assert round(count_parameters(generator) / 1e6, 1) == 11.4
    assert round(count_parameters(discriminator) / 1e6, 2) == 2.76
    assert count_parameters(ResnetGenerator(8, 2)) == _resnet_generator_parameters(8, 2)


def test_generator_keeps_the_size_and_the_model_range() -> None:
    generator = init_normal(ResnetGenerator(8, 2))
    x = torch.randn(2, 1, 32, 48) * 50  # far outside [-1, 1]: tanh still bounds the output
    with torch.no_grad():
        y = generator(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0
    with pytest.raises(ModelError, match="pad_to_multiple"):
        generator(torch.zeros(1, 1, 30, 32))


def _without_norms(module: nn.Module) -> nn.Module:
    """The conv stack alone: instance norm couples every pixel, hiding the receptive field."""
    for name, child in module.named_children():
        if isinstance(child, nn.InstanceNorm2d):
            setattr(module, name, nn.Identity())
        else:
            _without_norms(child)
    return module


def test_patchgan_gives_30x30_scores_on_256_and_sees_70x70_patches() -> None:
    discriminator = init_normal(PatchDiscriminator(ndf=8))
    with torch.no_grad():
        assert discriminator(torch.zeros(1, 1, 256, 256)).shape == (1, 1, 30, 30)
    stack = _without_norms(discriminator)
    x = torch.randn(1, 1, 256, 256, requires_grad=True)
    stack(x)[0, 0, 15, 15].backward()
    assert x.grad is not None
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(dim=0)).flatten()
    assert int(rows[-1] - rows[0]) + 1 == 70
    assert int(cols[-1] - cols[0]) + 1 == 70


def test_init_is_normal_0_02_seeded_and_leaves_the_global_rng_alone() -> None:
    generator = ResnetGenerator()
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    init_normal(generator, seed=3)
    assert torch.equal(torch.rand(1), expected)  # the global RNG did not move
    weights = torch.cat(
        [m.weight.detach().flatten() for m in generator.modules() if isinstance(m, nn.Conv2d)]
    )
    assert abs(float(weights.std()) - 0.02) < 0.0002
    assert abs(float(weights.mean())) < 0.0002
    for m in generator.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            assert m.bias is not None and torch.count_nonzero(m.bias) == 0
    first = dict(generator.named_parameters())["stem.0.weight"]
    same = dict(init_normal(ResnetGenerator(), seed=3).named_parameters())["stem.0.weight"]
    other = dict(init_normal(ResnetGenerator(), seed=4).named_parameters())["stem.0.weight"]
    assert torch.equal(same, first) and not torch.equal(other, first)


# -- config and schedule ---------------------------------------------------------------------------
def test_config_defaults_are_the_published_recipe_and_bad_values_are_named() -> None:
    config = CycleGANConfig()
    assert (config.ngf, config.ndf, config.n_blocks, config.n_layers_d) == (64, 64, 9, 3)
    assert (config.lambda_cycle, config.lambda_identity, config.pool_size) == (10.0, 0.5, 50)
    assert (config.lr, config.beta1, config.beta2) == (2e-4, 0.5, 0.999)
    assert config.gan_loss == "least_squares"
    with pytest.raises(ConfigError, match=r"\['ngff'\]"):
        CycleGANConfig.from_dict({"ngff": 8})
    with pytest.raises(ConfigError, match="n_blocks"):
        CycleGANConfig(n_blocks=-1)
    with pytest.raises(ConfigError, match="beta1"):
        CycleGANConfig(beta1=1.0)
    with pytest.raises(ConfigError, match="gan_loss"):
        CycleGANConfig(gan_loss="wasserstein")


def test_learning_rate_is_constant_then_decays_linearly_to_zero() -> None:
    factor = linear_decay(100, 50)
    assert [factor(s) for s in (0, 49, 50, 75, 100)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    recipe = _recipe(steps=4, decay_start=2)
    a, b = _toy_batch(0)
    rates = [recipe.learning_rate]
    for _ in range(4):
        recipe.train_step(a, b)
        rates.append(recipe.learning_rate)
    assert rates == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4, 0.0])
    assert recipe.optimizer_d.param_groups[0]["lr"] == pytest.approx(0.0)


# -- the training step -----------------------------------------------------------------------------
def test_each_players_step_lowers_its_own_losses_on_a_fixed_batch() -> None:
    # Deterministic: seeded init and a fixed toy batch, pools off (the discriminators see the
    # current fakes), CPU. Meaningful: each player is optimised with the other held fixed, which
    # is what one step of the alternating game promises; measured by `evaluate`, which changes
    # nothing. Three Adam steps at the published lr.
    recipe = _recipe(model={"pool_size": 0})
    real_a, real_b = _toy_batch(0)
    before = recipe.evaluate(real_a, real_b)
    for _ in range(3):
        recipe.generator_step(real_a, real_b)
    after_g = recipe.evaluate(real_a, real_b)
    for name in GENERATOR_TERMS:
        assert after_g[name] < before[name], (name, before[name], after_g[name])
    with torch.no_grad():
        fakes = recipe.generators(real_a, real_b)
    for _ in range(3):
        recipe.discriminator_step(real_a, real_b, fakes.fake_a, fakes.fake_b)
    after_d = recipe.evaluate(real_a, real_b)
    for name in ("d_a", "d_b"):
        assert after_d[name] < after_g[name], (name, after_g[name], after_d[name])
    for name in ("cycle_a", "cycle_b", "idt_a", "idt_b"):  # D's step left the generators alone
        assert after_d[name] == after_g[name]


def test_generator_step_gives_the_discriminators_no_gradient() -> None:
    recipe = _recipe()
    real_a, real_b = _toy_batch(1)
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


def test_each_wrapped_pair_runs_one_forward_per_step() -> None:
    wrappers: list[_CountingWrapper] = []

    def wrap(module: nn.Module) -> nn.Module:
        wrappers.append(_CountingWrapper(module))
        return wrappers[-1]

    recipe = _recipe(wrap=wrap)
    assert [w.module for w in wrappers] == [recipe.generators, recipe.discriminators]
    for step in range(3):
        recipe.train_step(*_toy_batch(step))
    assert [w.calls for w in wrappers] == [3, 3]


def test_distributed_data_parallel_training_equals_plain_training(tmp_path) -> None:
    # DDP (gloo, one process) raises when a wrapped module's forward leaves a parameter without
    # a gradient or runs twice per backward; with one process its averaging is the identity.
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = _recipe(wrap=DistributedDataParallel)
        plain = _recipe()
        assert isinstance(ddp.generators_train, DistributedDataParallel)
        for step in range(3):
            batch = _toy_batch(step)
            assert ddp.train_step(*batch) == plain.train_step(*batch)
    finally:
        dist.destroy_process_group()


def test_losses_are_reported_by_name_and_lower_precision_runs() -> None:
    real_a, real_b = _toy_batch(2)
    losses = _recipe().train_step(real_a, real_b)
    assert tuple(losses) == LOSS_NAMES
    assert all(isinstance(v, float) and np.isfinite(v) for v in losses.values())
    parts = sum(losses[name] for name in GENERATOR_TERMS[:-1])
    assert losses["g_total"] == pytest.approx(parts, rel=1e-6)
    assert losses["idt_a"] > 0
    assert _recipe(model={"lambda_identity": 0.0}).train_step(real_a, real_b)["idt_a"] == 0.0
    bf16 = _recipe(precision="bf16", channels_last=True).train_step(real_a, real_b)
    assert all(isinstance(v, float) and np.isfinite(v) for v in bf16.values())
    assert bf16["cycle_a"] == pytest.approx(losses["cycle_a"], rel=0.05)


# -- the image pool --------------------------------------------------------------------------------
def _image(value: float) -> torch.Tensor:
    return torch.full((1, 1, 2, 2), value)


def test_pool_of_size_zero_returns_its_input() -> None:
    pool = ImagePool(0)
    images = torch.rand(3, 1, 4, 4)
    assert pool.query(images) is images and len(pool) == 0


def test_pool_keeps_at_most_its_size_and_returns_history_or_the_new_image() -> None:
    pool = ImagePool(50, seed=0)
    seen: set[float] = set()
    swapped = 0
    for i in range(450):
        out = pool.query(_image(float(i)))
        value = float(out[0, 0, 0, 0])
        assert out.shape == (1, 1, 2, 2) and len(pool) == min(i + 1, 50)
        if i < 50:
            assert value == i  # filling: every image is stored and returned
        else:
            assert value == i or value in seen
            swapped += value != i
        seen.add(float(i))
    assert len({float(im[0, 0, 0]) for im in pool.images}) == 50
    assert abs(swapped / 400 - 0.5) < 0.1  # the published rule: swap with probability 1/2


def test_pool_is_seeded_and_its_state_round_trips(tmp_path) -> None:
    def stream(pool: ImagePool, start: int, n: int) -> list[float]:
        return [float(pool.query(_image(float(i)))[0, 0, 0, 0]) for i in range(start, start + n)]

    first, second, other = ImagePool(5, seed=1), ImagePool(5, seed=1), ImagePool(5, seed=2)
    assert stream(first, 0, 40) == stream(second, 0, 40)
    assert stream(other, 0, 40) != stream(ImagePool(5, seed=1), 0, 40)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    restored = ImagePool(5, seed=99)
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert stream(restored, 40, 30) == stream(first, 40, 30)
    with pytest.raises(ConfigError, match="pool_size"):
        ImagePool(6).load_state_dict(first.state_dict())


# -- state -----------------------------------------------------------------------------------------
def test_resume_from_a_state_dict_continues_exactly() -> None:
    batches = [_toy_batch(seed) for seed in range(6)]
    model = {"pool_size": 2}  # full after 2 steps: swaps happen after the resume point
    straight = _recipe(model=model, steps=6)
    expected = [straight.train_step(*batch) for batch in batches]

    first = _recipe(model=model, steps=6)
    for batch in batches[:3]:
        first.train_step(*batch)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)  # plain values only
    resumed = _recipe(model=model, steps=6, seed=123)  # everything comes from the state
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


def test_loading_a_state_of_another_architecture_is_a_config_error() -> None:
    state = _recipe().state_dict()
    with pytest.raises(ConfigError, match="model settings"):
        _recipe(model={"ngf": 16}).load_state_dict(state)


def test_saved_generator_rebuilds_from_its_model_config() -> None:
    recipe = _recipe()
    recipe.train_step(*_toy_batch(3))
    weights = recipe.generator_state()
    assert all(t.device.type == "cpu" for t in weights.values())
    generator = build_generator({**recipe.model_config(), "load_size": 286})
    generator.load_state_dict(weights)
    x = _toy_batch(4)[0]
    with torch.no_grad():
        assert torch.equal(generator(x), recipe.generators.g_ab(x))
    next(iter(weights.values())).add_(1.0)  # a copy: changing it leaves the recipe alone
    assert not torch.equal(
        next(iter(weights.values())), next(iter(recipe.generator_state().values()))
    )
