"""The CUT config: its defaults are the published CUT recipe, FastCUT is two settings away, and
every bad setting is a ConfigError naming it (unknown ones in one sentence with the known ones)."""

from __future__ import annotations

import pytest

from harmonize.errors import ConfigError
from harmonize.gan.cut.config import CUTConfig


def test_config_defaults_are_the_published_cut_recipe() -> None:
    config = CUTConfig()
    assert (config.ngf, config.ndf, config.n_blocks, config.n_layers_d) == (64, 64, 9, 3)
    assert config.nce_layers == (0, 4, 7, 10, 14)  # the paper's 0,4,8,12,16 (its numbering)
    assert (config.nce_t, config.num_patches, config.netf_nc) == (0.07, 256, 256)
    assert (config.lambda_gan, config.lambda_nce, config.nce_idt) == (1.0, 1.0, True)
    assert (config.lr, config.beta1, config.beta2) == (2e-4, 0.5, 0.999)
    assert config.gan_loss == "least_squares"
    fastcut = CUTConfig.from_dict({"nce_idt": False, "lambda_nce": 10})
    assert (fastcut.nce_idt, fastcut.lambda_nce) == (False, 10.0)


def test_nce_layers_from_yaml_are_stored_as_a_tuple() -> None:
    config = CUTConfig.from_dict({"n_blocks": 4, "nce_layers": [0, 4, 7, 10, 13]})
    assert config.nce_layers == (0, 4, 7, 10, 13)
    assert CUTConfig.from_dict({"n_blocks": 0, "nce_layers": [9]}).nce_layers == (9,)


def test_an_unknown_setting_is_one_sentence_naming_it_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        CUTConfig.from_dict({"ngf": 8, "nce_T": 0.1})
    message = str(raised.value)
    assert message.startswith("unknown cut model settings ['nce_T']; known: [")
    assert "'nce_t'" in message and "\n" not in message
    assert getattr(raised.value, "key", None) == "nce_T"
    with pytest.raises(ConfigError, match="cut model settings must be a mapping"):
        CUTConfig.from_dict([8])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ngf": 0}, r"cut ngf must be an integer >= 1, got 0"),
        ({"n_blocks": -1}, r"cut n_blocks must be an integer >= 0, got -1"),
        ({"num_patches": 0}, r"cut num_patches must be an integer >= 1, got 0"),
        ({"netf_nc": 2.5}, r"cut netf_nc must be an integer >= 1, got 2.5"),
        ({"nce_t": 0}, r"cut nce_t must be a number > 0, got 0"),
        ({"lambda_nce": -1}, r"cut lambda_nce must be a number >= 0, got -1"),
        ({"lambda_gan": "x"}, r"cut lambda_gan must be a number >= 0, got 'x'"),
        ({"nce_idt": "yes"}, r"cut nce_idt must be true or false, got 'yes'"),
        ({"beta2": 1.0}, r"cut beta2 must be a number in \[0, 1\), got 1.0"),
        ({"gan_loss": "hinge"}, r"cut gan_loss must be one of least_squares, vanilla"),
        # 9 blocks: indices 0..18; 4 blocks: 0..13.
        (
            {"nce_layers": [0, 4, 19]},
            r"nce_layers must be increasing .* in 0\.\.18 .*got \[0, 4, 19\]",
        ),
        ({"n_blocks": 4}, r"nce_layers must be increasing encoder layer indices in 0\.\.13"),
        ({"nce_layers": [4, 0]}, r"nce_layers must be increasing"),
        ({"nce_layers": [4, 4]}, r"nce_layers must be increasing"),
        ({"nce_layers": [-1, 4]}, r"nce_layers must be increasing"),
        ({"nce_layers": []}, r"nce_layers must be increasing"),
        ({"nce_layers": [0, True]}, r"nce_layers must be increasing"),
        ({"nce_layers": "0,4,8"}, r"nce_layers must be increasing .* got '0,4,8'"),
    ],
)
def test_bad_settings_are_config_errors_that_name_them(settings, message) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        CUTConfig.from_dict(settings)
    key = getattr(raised.value, "key", None)
    assert key in settings or (key == "nce_layers" and "n_blocks" in settings)
