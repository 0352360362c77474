"""`harmonize bench`: sizes are checked at the command line (one line, exit 2), and the run
benchmark's choices come from the registry."""

from __future__ import annotations

from typing import Any

import pytest

from harmonize.models.registry import method_names

from conftest import run_cli


def test_ssim_sizes_reach_the_benchmark_as_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    import harmonize.benchmarks.ssim as module

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(module, "run_ssim_benchmark", lambda **kw: calls.append(kw))
    assert run_cli("bench", "ssim", "--sizes", "64,128", "--n-images", "2") == 0
    assert run_cli("bench", "ssim") == 0
    assert [c["sizes"] for c in calls] == [(64, 128), (512, 1024, 2048)]
    assert calls[0]["n_images"] == 2 and calls[0]["repeats"] == 3


def test_run_benchmark_choices_and_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import harmonize.benchmarks.run as module

    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(module, "run_run_benchmark", lambda _, **kw: calls.append(("run", kw)))
    monkeypatch.setattr(module, "run_mode_benchmark", lambda _, **kw: calls.append(("mode", kw)))
    assert run_cli("bench", "run", "--help") == 0
    assert f"--method [{'|'.join(method_names())}]" in capsys.readouterr().out
    assert run_cli("bench", "run", "--method", "nyul", "--matrix", "64") == 0
    assert run_cli("bench", "run", "--method", "unit", "--model", "m") == 0
    (kind, run), (other, mode) = calls
    assert kind == "run" and run["method"] == "nyul" and run["n_images"] == 32
    assert other == "mode" and mode["method"] == "unit" and mode["n_images"] == 8
    assert mode["model_uri"].endswith("/m") and mode["matrix"] == 2048
