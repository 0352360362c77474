"""`harmonize train`: a command per registered method; without --config, --gpus 0 trains the
packaged CPU-sized config (said in one line) and --gpus N the published recipe; every config
error is one line naming the file, the line and the key."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harmonize.classifier.config import ClassifierConfig
from harmonize.experiments.packaged import config_names, config_path
from harmonize.models.registry import CLASSICAL, NEURAL, method_names
from harmonize.training.config import load_train_config

from conftest import run_cli

#: The inputs of each training command (never read: the tests stop before, or fake the trainer).
INPUTS = {
    "cyclegan": ["--source", "a", "--target", "b"],
    "unit": ["--source", "a", "--target", "b"],
    "cut": ["--source", "a", "--target", "b"],
    "classifier": ["--archive", "a", "--labels", "b"],
}


def test_there_is_a_train_command_per_registered_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("train", "--help") == 0
    listed = capsys.readouterr().out
    for name in [*method_names(), "classifier"]:
        assert f"  {name} " in listed


@pytest.mark.parametrize("name", ["cyclegan", "unit", "cut", "classifier"])
def test_config_help_names_its_own_example_and_the_packaged_configs(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("train", name, "--help") == 0
    # click wraps the help at hyphens too ("unit-cpu-" / "quick"): join those lines back.
    text = " ".join(re.sub(r"-\n\s+", "-", capsys.readouterr().out).split())
    assert f"jobs/configs/{name}.yaml" in text and f"{name}-cpu-quick with --gpus 0" in text
    others = {"cyclegan", "unit", "cut", "classifier"} - {name}
    assert not any(f"jobs/configs/{other}.yaml" in text for other in others)
    assert all(packaged in text for packaged in config_names())


def test_train_unit_names_a_missing_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-archive")
    code = run_cli("train", "unit", "--source", missing, "--target", "b", "--out", str(tmp_path))
    assert code == 2
    err = capsys.readouterr().err
    assert f'"{missing}" is not an existing folder or file; check the path' in err


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The jobs `harmonize train` hands to Ray Train (nothing trains: a fake summary)."""
    import harmonize.distributed.train as driver

    jobs: list[Any] = []

    def fake(job: Any, out: str, **options: Any) -> dict[str, Any]:
        jobs.append((job, out, options))
        n = {"train": {"finding": 1, "no_finding": 1}}
        validation = {"auc": 0.5, "n": 2, "finding": 1, "no_finding": 1}
        return {"steps": job.config.steps, "workers": 1, "start_step": 0, "seconds": 1.0,
                "losses": {}, "model_uri": f"{out}/model", "validation": validation,
                "n_images": n}  # fmt: skip

    monkeypatch.setattr(driver, "train_distributed", fake)
    return jobs


def _published(name: str) -> Any:
    return ClassifierConfig() if name == "classifier" else load_train_config(None, method=name)


def _quick(name: str) -> Any:
    if name == "classifier":
        from harmonize.classifier.config import load_classifier_config

        return load_classifier_config(config_path("classifier-cpu-quick"))
    return load_train_config(config_path(f"{name}-cpu-quick"), method=name)


@pytest.mark.parametrize("name", ["cyclegan", "unit", "cut", "classifier"])
def test_without_config_gpus_0_trains_the_packaged_cpu_config_and_gpus_n_the_published(
    name: str,
    trained: list[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["train", name, *INPUTS[name], "--out", "out", "--no-progress"]
    assert run_cli(*args) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "no --config" in line]
    assert said == [
        f"no --config and --gpus 0: training the packaged CPU-sized config {name}-cpu-quick; "
        f"for the published recipe add --gpus N, or --config jobs/configs/{name}.yaml of the "
        "repository"
    ]
    assert run_cli(*args, "--gpus", "2") == 0
    assert "no --config" not in capsys.readouterr().out
    assert run_cli(*args, "--gpus", "2", "--config", f"{name}-cpu-quick", "--steps", "7") == 0
    (quick, out_uri, on_cpu), (published, _, on_gpus), (named, _, _) = trained
    assert quick.config == _quick(name) and on_cpu["gpus"] == 0
    assert out_uri == str(tmp_path / "out")  # made absolute before it travels
    assert published.config == _published(name) and on_gpus["gpus"] == 2
    assert named.config == replace(_quick(name), steps=7)


@pytest.mark.parametrize("name", ["histogram", "cyclegan", "classifier"])
@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("# a comment\nsteps: [1, 2\n", 3, "not valid YAML"),
        ("# a comment\nstpes: 10\n", 2, "unknown"),
        ("# a comment\n{key}: {bad}\n", 2, "must be"),
    ],
    ids=["malformed", "unknown key", "bad value"],
)
def test_config_errors_are_one_line_naming_file_line_and_key(
    name: str, text: str, line: int, message: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    key, bad = {"histogram": ("levels", 2), "cyclegan": ("crop_size", 250)}.get(name, ("steps", 0))
    config = tmp_path / "config.yaml"
    config.write_text(text.format(key=key, bad=bad))
    inputs = INPUTS.get(name, ["--target", str(tmp_path)])
    assert (
        run_cli("train", name, *inputs, "--out", str(tmp_path / "o"), "--config", str(config)) == 2
    )
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"harmonize: error: {config}, line {line}: ") and message in err
    if message != "not valid YAML":
        assert ("stpes" if message == "unknown" else key) in err
    assert not (tmp_path / "o").exists()


def test_kinds_of_the_registry_get_their_options(capsys: pytest.CaptureFixture[str]) -> None:
    for name in method_names(CLASSICAL):
        assert run_cli("train", name, "--help") == 0
        assert "--gpus" not in capsys.readouterr().out
    for name in method_names(NEURAL):
        assert run_cli("train", name, "--help") == 0
        text = capsys.readouterr().out
        assert "--gpus" in text and "--crop-size" in text
