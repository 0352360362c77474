"""The CUT recipe: the PatchNCE loss against the paper's form of it, its extremes, the loss terms
with identity NCE on and off, and the saved generator through the model files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmonize.gan.losses import patch_nce_loss
from harmonize.io.storage import Storage
from harmonize.models.files import write_network
from harmonize.models.registry import load_model


def _unit_features(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1).float()


def _paper_patch_nce(queries: torch.Tensor, keys: torch.Tensor, t: float) -> torch.Tensor:
    """The paper's pseudocode, one image at a time: the positive logit first, then the
    negatives (the similarity matrix with its diagonal masked out), cross entropy on index 0."""
    losses = []
    for q, k in zip(queries, keys, strict=True):  # (S, C) each
        similarity = q @ k.T  # [i, j] = q_i . k_j
        positive = similarity.diagonal()[:, None]
        negatives = similarity.masked_fill(torch.eye(len(q), dtype=torch.bool), -math.inf)
        logits = torch.cat([positive, negatives], dim=1) / t
        losses.append(F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)))
    return torch.stack(losses)


def test_patch_nce_equals_the_papers_form_and_does_not_train_the_keys() -> None:
    queries = _unit_features(3, 16, 8, seed=1).requires_grad_()
    keys = _unit_features(3, 16, 8, seed=2).requires_grad_()
    loss = patch_nce_loss(queries, keys, 0.07)
    assert loss.shape == (3,)
    torch.testing.assert_close(loss, _paper_patch_nce(queries, keys, 0.07), rtol=1e-5, atol=1e-5)
    loss.mean().backward()
    assert keys.grad is None and queries.grad is not None and queries.grad.abs().sum() > 0


def test_patch_nce_is_low_for_matching_features_and_high_for_shuffled_ones() -> None:
    keys = _unit_features(2, 64, 64)
    same = patch_nce_loss(keys.clone(), keys, 0.07)
    shuffled = patch_nce_loss(keys[:, torch.randperm(64)], keys, 0.07)
    chance = math.log(64)  # every key equally likely
    assert (same < 0.05).all() and (shuffled > chance).all(), (same, shuffled)


def test_a_step_reports_every_term_finite_and_identity_nce_adds_its_term(
    tiny_recipe, toy_batch
) -> None:
    real_a, real_b = toy_batch(0)
    cut = tiny_recipe("cut")  # nce_idt: CUT
    fastcut = tiny_recipe("cut", model={"nce_idt": False, "lambda_nce": 10.0})
    before_cut, before_fast = cut.evaluate(real_a, real_b), fastcut.evaluate(real_a, real_b)
    # Same weights, same patches of x: CUT halves x's term and adds y's; FastCUT weights 10x.
    assert before_cut["nce_idt"] > 0 and before_fast["nce_idt"] == 0.0
    assert before_fast["nce"] == pytest.approx(20 * before_cut["nce"], rel=1e-5)
    assert before_fast["gan_ab"] == pytest.approx(before_cut["gan_ab"], rel=1e-5)
    for recipe in (cut, fastcut):
        for step in range(2):
            losses = recipe.train_step(*toy_batch(step))
            assert tuple(losses) == ("gan_ab", "nce", "nce_idt", "g_total", "d_b")
            assert all(np.isfinite(v) for v in losses.values())
            parts = losses["gan_ab"] + losses["nce"] + losses["nce_idt"]
            assert losses["g_total"] == pytest.approx(parts, rel=1e-6)
        assert (losses["nce_idt"] > 0) == recipe.config.nce_idt


def test_evaluate_draws_its_own_patches_and_training_draws_from_the_stream(
    tiny_recipe, toy_batch
) -> None:
    recipe = tiny_recipe("cut")
    batch = toy_batch(1)
    state = recipe.patches.get_state()
    assert recipe.evaluate(*batch) == recipe.evaluate(*batch)
    assert recipe.evaluate(*batch, patch_seed=1)["nce"] != recipe.evaluate(*batch)["nce"]
    assert torch.equal(recipe.patches.get_state(), state)  # evaluate leaves the stream alone
    recipe.train_step(*batch)
    assert not torch.equal(recipe.patches.get_state(), state)
    other_rank = tiny_recipe("cut", rank=1)
    assert not torch.equal(other_rank.patches.get_state(), state)


def test_the_saved_generator_loads_back_with_identical_outputs(
    tiny_recipe, toy_batch, tmp_path
) -> None:
    recipe = tiny_recipe("cut")
    recipe.train_step(*toy_batch(2))
    model_config = {**recipe.model_config(), "load_size": 40}
    write_network(str(tmp_path), "cut", model_config, recipe.generator_state(), card={})
    loaded = load_model(str(tmp_path), Storage(), expected_method="cut")
    assert loaded.harmonizer.model_config["nce_layers"] == list(recipe.config.nce_layers)
    x = toy_batch(3)[0]
    with torch.no_grad():
        ours = recipe.generators.g_ab(x)
        theirs = loaded.harmonizer.generator(x)  # type: ignore[attr-defined]
    assert torch.equal(ours, theirs)
    image = ((x[0, 0] + 1) / 2).numpy()
    expected = ((ours[0, 0] + 1) / 2).clamp(0, 1).numpy()
    np.testing.assert_allclose(loaded.harmonizer.transform(image), expected, atol=1e-6)
