"""UNIT: the shared-latent networks (one set of shared weights, one gradient from both domains),
the training step's invariants (each player's step lowers its losses, no discriminator gradient
from the generator step, DDP), VAE reconstruction, exact resume through the training loop, and
the saved translator at inference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harmonize.errors import ConfigError, ModelError
from harmonize.gan.layers import count_parameters
from harmonize.gan.losses import kl_unit_variance
from harmonize.gan.unit.config import UNITConfig
from harmonize.gan.unit.networks import build_generator
from harmonize.gan.unit.recipe import LOSS_NAMES, UNITRecipe
from harmonize.io.storage import Storage
from harmonize.models.registry import gan_parts, load_model
from harmonize.training import (
    TrainConfig,
    TrainingData,
    checkpoint_uri,
    latest_checkpoint,
    load_checkpoint,
    load_train_config,
    train,
)

# 32-px crops: 3 discriminator scales (32, 16, 8 px) of 2 stride-2 layers each.
TINY = {"ngf": 8, "ndf": 8, "n_blocks": 2, "n_shared_blocks": 1, "n_layers_d": 2}
WEIGHTS = ("lambda_gan", "lambda_recon", "lambda_kl", "lambda_cycle", "lambda_cycle_kl")
TERMS = {  # each weight and the loss terms it scales
    "lambda_gan": ("gan_ab", "gan_ba"),
    "lambda_recon": ("recon_a", "recon_b"),
    "lambda_kl": ("kl_a", "kl_b"),
    "lambda_cycle": ("cycle_a", "cycle_b"),
    "lambda_cycle_kl": ("cycle_kl_a", "cycle_kl_b"),
}


def _toy_batch(seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth images; site A darker and lower-contrast than site B (a real domain gap)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(2, 1, size + 6, size + 6, generator=g), 7, 1)
    base = (base - base.amin()) / (base.amax() - base.amin())
    return 0.6 * base[:1] - 0.7, 1.6 * base[1:] - 0.8


def _recipe(**overrides) -> UNITRecipe:
    model = {**TINY, **overrides.pop("model", {})}
    return UNITRecipe(model, steps=overrides.pop("steps", 100), **overrides)


def _generator_step_with_noise_seed(recipe: UNITRecipe, real_a, real_b, seed: int = 0) -> None:
    """A generator step whose latent noise is the noise ``evaluate(noise_seed=seed)`` draws,
    so the step descends exactly the objective that is measured."""
    recipe.noise.manual_seed(seed)
    recipe.generator_step(real_a, real_b)


# -- config ----------------------------------------------------------------------------------------
def test_config_defaults_are_the_published_recipe_and_bad_values_are_named() -> None:
    config = UNITConfig()
    assert (config.ngf, config.ndf, config.n_blocks, config.n_layers_d, config.n_scales_d) == (
        64,
        64,
        4,
        4,
        3,
    )
    assert [getattr(config, name) for name in WEIGHTS] == [1.0, 10.0, 0.01, 10.0, 0.01]
    assert (config.lr, config.beta1, config.beta2, config.weight_decay) == (1e-4, 0.5, 0.999, 1e-4)
    assert (config.lr_gamma, config.gan_loss) == (0.5, "least_squares")
    with pytest.raises(ConfigError, match=r"unknown unit model settings \['ngff'\]"):
        UNITConfig.from_dict({"ngf": 8, "ngff": 8})
    with pytest.raises(ConfigError, match=r"\['lambda_foo'\]"):
        load_train_config(method="unit", model={"lambda_foo": 1.0})
    with pytest.raises(ConfigError, match="n_shared_blocks"):
        UNITConfig(n_blocks=2, n_shared_blocks=3)
    with pytest.raises(ConfigError, match="lr_gamma"):
        UNITConfig(lr_gamma=0.0)
    with pytest.raises(ConfigError, match="gan_loss"):
        UNITConfig(gan_loss="wasserstein")
    assert TrainConfig(method="unit", model=TINY).model == TINY


def test_published_yaml_holds_the_defaults_and_the_quick_yaml_is_valid() -> None:
    configs = Path(__file__).resolve().parents[1] / "jobs" / "configs"
    published = load_train_config(str(configs / "unit.yaml"))
    assert published.method == "unit"
    assert UNITConfig.from_dict(published.model) == UNITConfig()
    quick = load_train_config(str(configs / "unit-cpu-quick.yaml"))
    assert quick.method == "unit" and quick.crop_size == 128
    UNITConfig.from_dict(quick.model)  # raises on a bad setting


def test_learning_rate_halves_every_step_size_steps() -> None:
    recipe = _recipe(model={"lr_step_size": 2}, steps=5)
    a, b = _toy_batch(0)
    rates = [recipe.learning_rate]
    for _ in range(5):
        recipe.train_step(a, b)
        rates.append(recipe.learning_rate)
    assert rates == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5])
    assert recipe.optimizer_d.param_groups[0]["lr"] == pytest.approx(2.5e-5)
    assert recipe.optimizer_g.param_groups[0]["weight_decay"] == 1e-4
    factor = _recipe(steps=30).scheduler_g.lr_lambdas[0]  # lr_step_size null: steps // 10
    assert (factor(2), factor(3), factor(6)) == (1.0, 0.5, 0.25)


# -- networks --------------------------------------------------------------------------------------
def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def test_shared_blocks_are_one_set_of_parameters_for_both_domains() -> None:
    gens = _recipe().generators
    ids = {name: {id(p) for p in m.parameters()} for name, m in gens.named_children()}
    for kind in ("encoder", "decoder"):
        path_a = {id(p) for p in getattr(gens, kind)("a").parameters()}
        path_b = {id(p) for p in getattr(gens, kind)("b").parameters()}
        shared = ids["enc_shared" if kind == "encoder" else "dec_shared"]
        assert shared and path_a & path_b == shared  # the very same tensors on both paths
    # Counted once: ngf 8 -> latent 32 channels; a residual block is two 3x3 convs.
    block = 2 * _conv(32, 32, 3)
    encoder = _conv(1, 8, 7) + _conv(8, 16, 4) + _conv(16, 32, 4) + block  # one private block
    decoder = block + _conv(32, 16, 5) + _conv(16, 8, 5) + _conv(8, 1, 7)
    assert count_parameters(gens) == 2 * encoder + 2 * decoder + 2 * block
    assert len(gens.state_dict()) == len(list(gens.parameters()))  # no duplicated keys

    # One gradient, accumulated from both domains.
    real_a, real_b = _toy_batch(0)
    shared_weight = gens.enc_shared[0].body[0][0].weight

    def grad_of(*domains: str) -> torch.Tensor:
        gens.zero_grad(set_to_none=True)
        loss = sum(gens.encoder(d)(real_a if d == "a" else real_b).square().mean() for d in domains)
        loss.backward()
        return shared_weight.grad.clone()

    from_a, from_b, both = grad_of("a"), grad_of("b"), grad_of("a", "b")
    assert from_a.abs().sum() > 0 and from_b.abs().sum() > 0
    assert not torch.allclose(from_a, from_b)
    torch.testing.assert_close(both, from_a + from_b)


def test_translator_is_deterministic_fully_convolutional_and_in_range() -> None:
    recipe = _recipe()
    translator = recipe.generators.translator()
    shared = {id(p) for p in recipe.generators.parameters()}
    assert {id(p) for p in translator.parameters()} <= shared  # a view, not a copy
    x = torch.randn(2, 1, 32, 48) * 50
    with torch.no_grad():
        y = translator(x)
        assert torch.equal(translator(x), y)  # the latent mean: no sampling at inference
    assert y.shape == x.shape and y.abs().max() <= 1.0
    with pytest.raises(ModelError, match="pad_to_multiple"):
        translator(torch.zeros(1, 1, 30, 32))
    convs = [m for m in translator.modules() if isinstance(m, nn.Conv2d) and m.padding != (0, 0)]
    assert convs and all(m.padding_mode == "reflect" for m in convs)


def test_saved_generator_rebuilds_from_its_model_config() -> None:
    recipe = _recipe()
    recipe.train_step(*_toy_batch(3))
    weights = recipe.generator_state()
    assert all(t.device.type == "cpu" for t in weights.values())
    generator = build_generator({**recipe.model_config(), "load_size": 286})
    assert generator.state_dict().keys() == weights.keys()
    generator.load_state_dict(weights)
    x = _toy_batch(4)[0]
    with torch.no_grad():
        assert torch.equal(generator(x), recipe.generators.translator()(x))
        gens = recipe.generators
        assert torch.equal(generator(x), gens.decoder("b")(gens.encoder("a")(x)))


# -- the training step -----------------------------------------------------------------------------
def test_each_players_step_lowers_its_own_losses_on_a_fixed_batch() -> None:
    # Deterministic: seeded init, a fixed toy batch, CPU, and the same latent noise in the steps
    # as in `evaluate`, which changes nothing. Each player is optimised with the other held
    # fixed. The KL terms are left out here: at weight 0.01 the reconstruction gradient, which
    # favours a larger code against unit noise, dominates them (the VAE trade-off); the next
    # test shows each KL term falls under its own gradient.
    recipe = _recipe()
    real_a, real_b = _toy_batch(0)
    before = recipe.evaluate(real_a, real_b)
    for _ in range(3):
        _generator_step_with_noise_seed(recipe, real_a, real_b)
    after_g = recipe.evaluate(real_a, real_b)
    kl_terms = (*TERMS["lambda_kl"], *TERMS["lambda_cycle_kl"])
    for name in LOSS_NAMES[:-2]:
        if name not in kl_terms:
            assert after_g[name] < before[name], (name, before[name], after_g[name])
    with torch.no_grad():
        images = recipe.generators(real_a, real_b)
    for _ in range(3):
        recipe.discriminator_step(real_a, real_b, images.fake_a, images.fake_b)
    after_d = recipe.evaluate(real_a, real_b)
    for name in ("d_a", "d_b"):
        assert after_d[name] < after_g[name], (name, after_g[name], after_d[name])
    for name in (*TERMS["lambda_recon"], *TERMS["lambda_cycle"], *kl_terms):
        assert after_d[name] == after_g[name]  # D's step left the VAEs alone


@pytest.mark.parametrize("weight", WEIGHTS)
def test_each_loss_term_alone_is_lowered_by_the_generator_step(weight: str) -> None:
    recipe = _recipe(model={**{w: 0.0 for w in WEIGHTS}, weight: 1.0})
    real_a, real_b = _toy_batch(1)
    before = recipe.evaluate(real_a, real_b)
    for _ in range(3):
        _generator_step_with_noise_seed(recipe, real_a, real_b)
    after = recipe.evaluate(real_a, real_b)
    for name in TERMS[weight]:
        assert 0 < after[name] < before[name], (name, before[name], after[name])
    others = [n for w, names in TERMS.items() if w != weight for n in names]
    assert all(after[name] == 0.0 for name in others)
    assert after["g_total"] == pytest.approx(sum(after[name] for name in TERMS[weight]))


def test_kl_of_a_unit_variance_gaussian_is_the_mean_square_of_its_mean() -> None:
    mu = torch.tensor([[0.0, 1.0], [2.0, -3.0]])
    assert float(kl_unit_variance(mu)) == pytest.approx((0 + 1 + 4 + 9) / 4)
    # Monte-Carlo check of KL(N(mu, 1) || N(0, 1)) = mu^2 / 2 per element.
    g = torch.Generator().manual_seed(0)
    samples = 1.5 + torch.randn(400_000, generator=g)
    log_ratio = -0.5 * (samples - 1.5) ** 2 + 0.5 * samples**2
    assert float(log_ratio.mean()) == pytest.approx(1.5**2 / 2, rel=0.02)


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


def test_distributed_data_parallel_training_equals_plain_training(tmp_path) -> None:
    # DDP (gloo, one process) raises when a wrapped module's forward leaves a parameter without
    # a gradient or runs twice per backward; the shared blocks run several times in one forward.
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = _recipe(wrap=DistributedDataParallel)
        plain = _recipe()
        assert isinstance(ddp.generators_train, DistributedDataParallel)
        for step in range(2):
            batch = _toy_batch(step)
            assert ddp.train_step(*batch) == plain.train_step(*batch)
    finally:
        dist.destroy_process_group()


def test_losses_are_reported_by_name_and_lower_precision_runs() -> None:
    real_a, real_b = _toy_batch(2)
    losses = _recipe().train_step(real_a, real_b)
    assert tuple(losses) == LOSS_NAMES
    assert all(isinstance(v, float) and np.isfinite(v) and v > 0 for v in losses.values())
    parts = sum(losses[name] for name in LOSS_NAMES[:-3])
    assert losses["g_total"] == pytest.approx(parts, rel=1e-6)
    bf16 = _recipe(precision="bf16", channels_last=True).train_step(real_a, real_b)
    assert all(isinstance(v, float) and np.isfinite(v) for v in bf16.values())
    assert bf16["recon_a"] == pytest.approx(losses["recon_a"], rel=0.05)


def test_encode_decode_reconstructs_a_toy_image_after_a_short_fit() -> None:
    recipe = _recipe(model={"lr": 1e-3, "lr_step_size": 1000}, steps=120)
    real_a, real_b = _toy_batch(5)
    gens = recipe.generators

    def error() -> float:
        with torch.no_grad():
            return float((gens.decoder("a")(gens.encoder("a")(real_a)) - real_a).abs().mean())

    start = error()
    for _ in range(120):
        recipe.train_step(real_a, real_b)
    end = error()
    assert end < 0.1 * start and end < 0.1, (start, end)  # [-1, 1] images: 5 % of the range


# -- through the training loop and back through load_model -----------------------------------------
def _smooth_levels(rng: np.random.Generator, shape: tuple[int, int], lo: int, hi: int):
    noise = torch.from_numpy(rng.random((1, 1, shape[0] + 8, shape[1] + 8)))
    smooth = torch.nn.functional.avg_pool2d(noise, 9, 1)[0, 0].numpy()
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (lo + (hi - lo) * smooth).astype(np.uint16)


@pytest.fixture(scope="module")
def data() -> TrainingData:
    rng = np.random.default_rng(0)
    source = [_smooth_levels(rng, (40, 48), 2000, 30000) for _ in range(3)]
    target = [_smooth_levels(rng, (44, 40), 20000, 60000) for _ in range(3)]
    return TrainingData(source, target, load_size=40, source_uri="a", target_uri="b")


def _config(**overrides) -> TrainConfig:
    values = {
        "method": "unit",
        "steps": 6,
        "crop_size": 32,
        "load_size": 40,
        "log_every": 1,
        "checkpoint_every": 3,
        "model": TINY,
        "validation_images": 2,
    }
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data: TrainingData) -> Path:
    out = tmp_path_factory.mktemp("unit") / "straight"
    train(_config(), data, str(out), progress=False)
    return out


def test_resume_after_a_crash_continues_exactly(tmp_path, data, trained) -> None:
    class Crash(Exception):
        pass

    def crash_at_step_5(metrics: dict[str, float], step: int) -> None:
        if step == 5:
            raise Crash

    crashed = str(tmp_path / "crashed")
    with pytest.raises(Crash):
        train(_config(), data, crashed, report=crash_at_step_5, progress=False)
    assert latest_checkpoint(crashed) == checkpoint_uri(crashed, 3)
    result = train(_config(), data, crashed, progress=False)  # a new recipe, resumed at step 3
    assert result.start_step == 3

    def metrics(run: str | Path) -> list[dict[str, float]]:
        lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds_per_step"} for x in lines]

    assert [m["step"] for m in metrics(crashed)] == [1, 2, 3, 4, 5, 6]
    assert set(LOSS_NAMES) <= set(metrics(crashed)[0])
    assert metrics(crashed) == metrics(trained)  # the same next-step losses, bit for bit
    ours = load_checkpoint(checkpoint_uri(crashed, 6), Storage())["recipe"]
    theirs = load_checkpoint(checkpoint_uri(str(trained), 6), Storage())["recipe"]
    for part in ("generators", "discriminators"):
        for name, value in ours[part].items():
            assert torch.equal(value, theirs[part][name]), name
    assert torch.equal(ours["noise"], theirs["noise"])


def test_loading_a_state_of_another_architecture_is_a_config_error() -> None:
    state = _recipe().state_dict()
    with pytest.raises(ConfigError, match="model settings"):
        _recipe(model={"ngf": 16}).load_state_dict(state)


@pytest.mark.parametrize("mode", ["direct", "curve"])
def test_saved_model_loads_and_transforms_deterministically(trained: Path, mode: str) -> None:
    loaded = load_model(str(trained), Storage(), "unit", mode)
    assert loaded.card["method"] == "unit" and loaded.card["validation"]["n_images"] == 2
    harmonizer = loaded.harmonizer
    image = np.random.default_rng(2).random((37, 50), dtype=np.float32)  # not a multiple of 4
    out = harmonizer.transform(image)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(harmonizer.transform(image), out)  # no sampling
    if mode == "direct":  # equals the rebuilt generator on the reflect-padded image
        generator = gan_parts("unit").build_generator(loaded.harmonizer.model_config)
        state = load_checkpoint(checkpoint_uri(str(trained), 6), Storage())["recipe"]
        generator.load_state_dict(
            {k: v for k, v in state["generators"].items() if k in generator.state_dict()}
        )
        with torch.inference_mode():
            x = torch.from_numpy(image)[None, None] * 2 - 1
            padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")
            ref = ((generator(padded)[..., :37, :50] + 1) / 2).clamp(0, 1)[0, 0].numpy()
        np.testing.assert_allclose(out, ref, atol=1e-6)
    else:  # a monotone curve: pixel order is kept
        order = np.argsort(image, axis=None)
        assert np.all(np.diff(out.ravel()[order]) >= 0)
    with pytest.raises(ModelError, match="holds a unit model"):
        load_model(str(trained), Storage(), "cyclegan", mode)
