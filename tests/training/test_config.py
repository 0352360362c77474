"""The GAN training config: every setting from YAML with overrides, and bad settings named in one
line (with the file and line when they come from a file)."""

from __future__ import annotations

import pytest
import torch

from harmonize.errors import ConfigError
from harmonize.training.config import COMPILE_MIN_STEPS, TrainConfig, load_train_config


def test_every_setting_comes_from_yaml_and_overrides_win(tmp_path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(
        "steps: 300\ndecay_start: 100\nbatch_size: 2\ncrop_size: 64\nload_size: 72\nflip: true\n"
        "seed: 9\nlog_every: 10\ncheckpoint_every: 50\nprecision: fp32\nchannels_last: false\n"
        "compile: false\nvalidation_images: 2\nmodel: {ngf: 16, lambda_identity: 0.0}\n"
    )
    config = load_train_config(str(path), steps=None, crop_size=32, model={"n_blocks": 3})
    assert config.steps == 300 and config.decay_start_step == 100 and config.crop_size == 32
    assert (config.batch_size, config.load_size, config.flip, config.seed) == (2, 72, True, 9)
    assert (config.log_every, config.checkpoint_every, config.validation_images) == (10, 50, 2)
    assert (config.precision, config.channels_last, config.compile) == ("fp32", False, False)
    assert dict(config.model) == {"ngf": 16, "lambda_identity": 0.0, "n_blocks": 3}
    assert load_train_config().to_dict() == TrainConfig().to_dict()
    assert TrainConfig(steps=1000).decay_start_step == 500


def test_bad_settings_are_config_errors_that_name_them(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("steps: 10\nlearning_rate: 0.1\ncrop: 3\n")
    with pytest.raises(ConfigError, match=r"\['crop', 'learning_rate'\]"):
        load_train_config(str(path))
    with pytest.raises(ConfigError, match=r"\['stepz'\]"):
        load_train_config(stepz=3)
    with pytest.raises(ConfigError, match="ngff"):
        load_train_config(model={"ngff": 8})
    with pytest.raises(ConfigError, match="multiple of 4"):
        TrainConfig(crop_size=250)
    with pytest.raises(ConfigError, match="larger than load_size"):
        TrainConfig(crop_size=256, load_size=200)
    with pytest.raises(ConfigError, match="munit"):
        TrainConfig(method="munit")
    with pytest.raises(ConfigError, match="decay_start"):
        TrainConfig(steps=10, decay_start=11)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config(str(tmp_path / "list.yaml"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("crop_size: 250", "crop_size must be a multiple of 4"),
        ("steps: 0", "steps must be an integer >= 1, got 0"),
        ("flip: maybe", "flip must be true or false, got 'maybe'"),
        ("channels_last: 1.5", "channels_last must be auto, true or false, got 1.5"),
        ("model: [8]", "model must be a mapping"),
    ],
)
def test_a_bad_value_in_a_file_is_one_line_naming_its_file_and_line(
    tmp_path, line: str, message: str
) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(f"load_size: 286\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_train_config(str(path))
    assert str(caught.value).startswith(f"{path}, line 2: training ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_compile_is_automatic_on_gpus_for_long_runs_and_training_is_tuned_there() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    long, short = TrainConfig(steps=COMPILE_MIN_STEPS), TrainConfig(steps=COMPILE_MIN_STEPS - 1)
    assert long.compile == "auto" and long.cuda_graphs is False  # the defaults
    on_gpu = long.resolved(cuda)
    assert (on_gpu["compile"], on_gpu["fused_optimizer"], on_gpu["cudnn_benchmark"]) == (
        True,
        True,
        True,
    )
    assert (on_gpu["precision"], on_gpu["channels_last"]) == ("bf16", True)
    assert short.resolved(cuda)["compile"] is False  # compiling would not pay back
    on_cpu = long.resolved(cpu)
    assert not any(on_cpu[k] for k in ("compile", "fused_optimizer", "cudnn_benchmark"))
    assert TrainConfig(steps=10, compile=True).resolved(cpu)["compile"] is True  # as asked
    assert TrainConfig(compile=False).resolved(cuda)["compile"] is False
    with pytest.raises(ConfigError, match="compile must be auto, true or false, got 'yes'"):
        TrainConfig(compile="yes")
    with pytest.raises(ConfigError, match="cuda_graphs must be true or false"):
        TrainConfig(cuda_graphs="auto")  # type: ignore[arg-type]
