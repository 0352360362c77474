"""The experiment's config: methods and modes from the registry, every field checked (one
sentence naming it), --quick's sizes, and the packaged training configs as defaults."""

from __future__ import annotations

import pytest

from harmonize.errors import ConfigError
from harmonize.experiments.config import QUICK, ExperimentConfig, neural_modes
from harmonize.experiments.packaged import config_path
from harmonize.models.registry import METHODS, NEURAL, method_names


def test_defaults_derive_from_the_registry_and_the_packaged_configs() -> None:
    config = ExperimentConfig()
    assert config.methods == tuple(method_names()) == tuple(METHODS)
    assert set(config.modes) == set(neural_modes()) == {"curve", "local", "direct"}
    for method in method_names(NEURAL):
        assert config.gan_config(method) == config_path(f"{method}-cpu-quick")
    assert config.classifier_config_path() == config_path("classifier-cpu-quick")
    assert ExperimentConfig.defaults()["n_train"] == 200


def test_quick_is_the_defaults_with_the_quick_sizes() -> None:
    quick = ExperimentConfig.quick(n_test=8)
    assert quick == ExperimentConfig(**{**QUICK, "n_test": 8})
    assert (quick.n_train, quick.matrix, quick.modes, quick.gan_steps) == (16, 128, ("curve",), 4)


def test_given_configs_may_be_packaged_names_paths_or_uris() -> None:
    config = ExperimentConfig(
        gan_configs=(("cyclegan", "unit-cpu-quick"), ("unit", "s3://cfg/unit.yaml")),
        classifier_config="my/classifier.yaml",
    )
    assert config.gan_config("cyclegan") == config_path("unit-cpu-quick")
    assert config.gan_config("unit") == "s3://cfg/unit.yaml"
    assert config.classifier_config_path() == "my/classifier.yaml"


def test_source_sites_keep_their_order_once_each() -> None:
    config = ExperimentConfig(source_sites=["raw-dr", "cr-grid", "raw-dr"])
    assert config.source_sites == ("raw-dr", "cr-grid") and not config.user_archive
    user = ExperimentConfig(source_uri="s", target_uri="t", labels_uri="l")
    assert user.user_archive and user.truth_uri is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_train": 3}, "experiment n_train must be an integer >= 4, got 3"),
        ({"n_test": True}, "experiment n_test must be an integer >= 4, got True"),
        ({"matrix": 32}, "experiment matrix must be an integer in [64, 8192], got 32"),
        ({"seed": 1.5}, "experiment seed must be an integer, got 1.5"),
        ({"target_site": "mc-like"}, 'source_sites must not name the target site "mc-like"'),
        ({"source_sites": ("",)}, "experiment source_sites must be a non-empty string"),
        ({"source_sites": ()}, "experiment source_sites must name at least one site profile"),
        (
            {"source_uri": "a", "target_uri": "b"},
            "needs source_uri, target_uri and labels_uri; labels_uri missing",
        ),
        ({"truth_uri": "t"}, "experiment truth_uri needs source_uri, target_uri and labels_uri"),
        ({"source_uri": "a", "target_uri": "b", "labels_uri": " "}, "labels_uri must be a non"),
        ({"test_fraction": 0.99}, "experiment test_fraction must be a number in [0.05, 0.95]"),
        ({"methods": ("histogram", "gan")}, "experiment methods must be one of histogram, nyul"),
        ({"methods": ()}, "experiment methods must name at least one of"),
        ({"modes": ("tiled",)}, "modes must be one of direct, curve, local, got 'tiled'"),
        ({"gan_configs": (("nyul", "a.yaml"),)}, "gan_configs method must be one of cyclegan"),
        ({"gan_configs": (("unit", ""),)}, "experiment gan_configs unit must be a non-empty"),
        ({"gan_steps": 0}, "experiment gan_steps must be an integer >= 1, got 0"),
        ({"classifier_steps": -1}, "experiment classifier_steps must be an integer >= 1"),
        ({"classifier_config": " "}, "experiment classifier_config must be a non-empty"),
        ({"executor": "spark"}, "experiment executor must be one of ray, local, got 'spark'"),
        ({"lesion_strength": -1}, "experiment lesion_strength must be a number >= 0"),
        ({"prevalence": 1.5}, "experiment prevalence must be a number in [0, 1], got 1.5"),
    ],
)
def test_every_field_is_checked(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ExperimentConfig(**overrides)
    assert message in str(info.value) and "\n" not in str(info.value)
