"""Model cards: every registered method states its known failure modes; a fitted and a trained
model's card state their sites, training data, validation figures and failure modes; the card's
target histogram reaches the loaded harmonizer (run QA's ``hist_away``)."""

from __future__ import annotations

import numpy as np
import pytest

from harmonize.metrics.histogram import HIST_BINS
from harmonize.models.cards import (
    FAILURE_MODES,
    MODE_FAILURE_MODES,
    card_target_histogram,
    failure_modes,
    intended_use,
    site_name,
)
from harmonize.models.files import read_model
from harmonize.models.registry import METHODS, load_model, method

from conftest import SOURCE, TARGET


def test_every_method_and_mode_has_known_failure_modes() -> None:
    assert set(FAILURE_MODES) == set(METHODS)
    for name, entry in METHODS.items():
        assert FAILURE_MODES[name] and all(text.strip() for text in FAILURE_MODES[name])
        assert set(entry.modes) <= set(MODE_FAILURE_MODES)
    assert failure_modes("cyclegan", ("curve",)) == [
        *FAILURE_MODES["cyclegan"],
        MODE_FAILURE_MODES["curve"],
    ]


def test_intended_use_names_sites_from_the_archive_folders() -> None:
    assert site_name("s3://pacs/shenzhen-like/") == "shenzhen-like" and site_name(None) is None
    use = intended_use(
        "unit",
        target_uri="/a/t-site",
        source_uri="s3://b/s-site",
        n_images={"source": 3, "target": 4},
        modes=method("unit").modes,
    )
    assert use["source_site"] == "s-site" and use["target_site"] == "t-site"
    assert use["training_data"] == {
        "target_uri": "/a/t-site",
        "source_uri": "s3://b/s-site",
        "n_images": {"source": 3, "target": 4},
    }
    assert use["known_failure_modes"] == failure_modes("unit", ("direct", "curve", "local"))


def test_card_target_histogram_accepts_only_a_histogram() -> None:
    good = np.full(HIST_BINS, 1.0 / HIST_BINS)
    np.testing.assert_array_equal(
        card_target_histogram({"target_histogram": list(good)}, HIST_BINS), good
    )
    for bad in (None, "x", [1.0] * 3, [-1.0] + [1.0] * (HIST_BINS - 1), [0.0] * HIST_BINS):
        assert card_target_histogram({"target_histogram": bad}, HIST_BINS) is None
    assert card_target_histogram({}, HIST_BINS) is None


def test_a_fitted_models_card(histogram_model: str) -> None:
    card = read_model(histogram_model).card
    use = card["intended_use"]
    assert use["target_site"] == TARGET and use["source_site"].startswith("any")
    assert use["training_data"]["n_images"] == {"target": card["n_images"]} == {"target": 8}
    assert use["known_failure_modes"] == list(FAILURE_MODES["histogram"])
    validation = card["validation"]  # target images through the model: nearly unchanged
    assert validation["n_images"] == 8 and validation["images"] == "target (in-domain)"
    assert 0.8 < validation["ssim_mean"] <= 1.0
    assert validation["w1_to_target_after"] < validation["w1_to_target_before"]
    loaded = load_model(histogram_model).harmonizer
    assert loaded.target_histogram is not None
    np.testing.assert_allclose(loaded.target_histogram, card["target_histogram"])


@pytest.mark.timeout(300)
def test_a_trained_models_card(cyclegan_model: str) -> None:
    card = read_model(cyclegan_model).card
    use = card["intended_use"]
    assert (use["source_site"], use["target_site"]) == (SOURCE, TARGET)
    assert use["training_data"]["n_images"] == card["n_images"]
    assert use["known_failure_modes"] == failure_modes("cyclegan", method("cyclegan").modes)
    assert {"ssim_mean", "w1_to_target_before", "w1_to_target_after"} <= set(card["validation"])
