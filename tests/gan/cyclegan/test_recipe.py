"""The CycleGAN recipe: its LR schedule, the generator step lowering every generator loss, and
the identity loss switched off by its weight."""

from __future__ import annotations

import pytest

GENERATOR_TERMS = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "g_total")


def test_learning_rate_is_constant_then_decays_linearly_to_zero(tiny_recipe, toy_batch) -> None:
    recipe = tiny_recipe("cyclegan", steps=4, decay_start=2)
    a, b = toy_batch(0)
    rates = [recipe.learning_rate]
    for _ in range(4):
        recipe.train_step(a, b)
        rates.append(recipe.learning_rate)
    assert rates == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4, 0.0])
    assert recipe.optimizer_d.param_groups[0]["lr"] == pytest.approx(0.0)


def test_generator_step_lowers_every_generator_loss_on_a_fixed_batch(
    tiny_recipe, toy_batch
) -> None:
    # Deterministic: seeded init and a fixed toy batch, pools off, CPU. Meaningful: the
    # generators are optimised with the discriminators held fixed, which is what one step of the
    # alternating game promises; measured by `evaluate`, which changes nothing. Three Adam steps
    # at the published lr. (The discriminators' step: tests/gan/test_recipe.py.)
    recipe = tiny_recipe("cyclegan", model={"pool_size": 0})
    real_a, real_b = toy_batch(0)
    before = recipe.evaluate(real_a, real_b)
    for _ in range(3):
        recipe.generator_step(real_a, real_b)
    after = recipe.evaluate(real_a, real_b)
    for name in GENERATOR_TERMS:
        assert after[name] < before[name], (name, before[name], after[name])


def test_identity_loss_is_zero_and_unmade_when_its_weight_is(tiny_recipe, toy_batch) -> None:
    real_a, real_b = toy_batch(2)
    assert tiny_recipe("cyclegan").train_step(real_a, real_b)["idt_a"] > 0
    recipe = tiny_recipe("cyclegan", model={"lambda_identity": 0.0})
    losses = recipe.train_step(real_a, real_b)
    assert losses["idt_a"] == losses["idt_b"] == 0.0
    images, _ = recipe.generator_step(real_a, real_b)
    assert images.idt_a is None and images.idt_b is None
