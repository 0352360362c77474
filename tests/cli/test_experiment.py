"""`harmonize experiment` (its help shows the real defaults, and --quick's; its options become
an ExperimentConfig) and `harmonize demo` end to end."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harmonize.experiments.config import QUICK, ExperimentConfig
from harmonize.experiments.packaged import config_path
from harmonize.models.registry import NEURAL, method_names

from conftest import run_cli


def _help(*command: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert run_cli(*command, "--help") == 0
    return " ".join(capsys.readouterr().out.split()).replace("- ", "-")


def test_help_shows_the_config_defaults_and_quicks(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help("experiment", capsys=capsys)
    default = ExperimentConfig()
    for name in ("n_train", "n_test", "matrix"):
        assert f"[default: {getattr(default, name)}; --quick: {QUICK[name]}]" in text
    assert f"[default: {', '.join(default.methods)}]" in text
    assert f"[default: {', '.join(default.modes)}; --quick: {', '.join(QUICK['modes'])}]" in text
    assert f"[default: {default.lesion_strength}]" in text
    assert (
        f"--quick: {QUICK['gan_steps']}]" in text and "[default: METHOD=<method>-cpu-quick]" in text
    )
    assert f"--method [{'|'.join(method_names())}]" in text


@pytest.fixture
def experiments(monkeypatch: pytest.MonkeyPatch) -> list[tuple[ExperimentConfig, str]]:
    """The (config, out) of each `harmonize experiment` (nothing runs)."""
    import harmonize.experiments.experiment as module

    seen: list[tuple[ExperimentConfig, str]] = []

    def fake(config: ExperimentConfig, out_uri: str, **_: Any) -> Any:
        seen.append((config, out_uri))
        report = SimpleNamespace(markdown="# report", html_path="r.html")
        family = SimpleNamespace(source="s", target="t", report=report)
        return SimpleNamespace(families=[family])

    monkeypatch.setattr(module, "run_experiment", fake)
    return seen


def test_options_become_the_experiment_config(
    experiments: list[tuple[ExperimentConfig, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli("experiment", "--out", "out/x") == 0
    args = ["--method", "nyul", "--method", "unit", "--method", "nyul", "--mode", "direct"]
    args += ["--gan-config", "unit=unit-cpu-quick", "--classifier-config", "c.yaml"]
    assert run_cli("experiment", "--out", "out/y", "--quick", *args, "--executor", "local") == 0
    (plain, plain_out), (quick, quick_out) = experiments
    assert plain == ExperimentConfig() and plain_out == str(tmp_path / "out" / "x")
    assert quick == ExperimentConfig.quick(
        methods=("nyul", "unit"),
        modes=("direct",),
        gan_configs=(("unit", config_path("unit-cpu-quick")),),
        classifier_config=str(tmp_path / "c.yaml"),
        executor="local",
    )
    assert quick_out == str(tmp_path / "out" / "y")


def test_sites_and_a_users_archive_become_the_config(
    experiments: list[tuple[ExperimentConfig, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    families = ["--source-profile", "raw-dr", "--source-profile", "cr-grid"]
    families += ["--source-profile", "raw-dr", "--target-profile", "processed-dr"]
    assert run_cli("experiment", "--out", "o", *families) == 0
    user = ["--source", "a", "--target", "s3://b/t", "--labels", "l.csv", "--truth", "tr"]
    assert run_cli("experiment", "--out", "o", *user, "--test-fraction", "0.25") == 0
    (synthetic, _), (own, _) = experiments
    assert synthetic == ExperimentConfig(
        source_sites=("raw-dr", "cr-grid"), target_site="processed-dr"
    )
    assert own == ExperimentConfig(
        source_uri=str(tmp_path / "a"),
        target_uri="s3://b/t",
        labels_uri=str(tmp_path / "l.csv"),
        truth_uri=str(tmp_path / "tr"),
        test_fraction=0.25,
    )


@pytest.mark.parametrize("value", ["histogram=x.yaml", "cyclegan", "cyclegan=", "gan=a.yaml"])
def test_gan_config_names_a_neural_method(
    value: str, experiments: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("experiment", "--out", "o", "--gan-config", value) == 2
    err = capsys.readouterr().err
    assert f"write METHOD=YAML, METHOD one of {method_names(NEURAL)}" in err
    assert len(err.strip().splitlines()) == 1 and experiments == []


@pytest.mark.slow
def test_demo_runs_end_to_end_on_ray(tmp_path, ray_session, capsys) -> None:
    assert run_cli("demo", str(tmp_path / "demo"), "--n-per-site", "4", "--matrix", "128") == 0
    out = capsys.readouterr().out
    assert "| histogram | 4 | 0 |" in out and "| nyul | 4 | 0 |" in out
    assert Path(out.strip().splitlines()[-1].split(": ", 1)[1]).is_file()
