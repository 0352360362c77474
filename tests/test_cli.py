"""The command line as users and scripts call it: exit codes, messages, the whole chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harmonize.cli import main

from conftest import SOURCE, TARGET


def _cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_help_is_fast_and_lists_the_contract_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "harmonize.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for command in ("synth", "train", "run", "report", "demo", "bench"):
        assert command in out
    code = "import sys, harmonize.cli; print('torch' in sys.modules, 'ray' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == ["False", "False"]  # heavy libraries load inside commands only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "--method", "histogram", "--model", "/nope", "--input", "/nope", "--out", "/x"],
            "no model",
        ),
        (
            ["run", "--method", "bogus", "--model", "m", "--input", "i", "--out", "o"],
            "is not one of",
        ),
        (
            ["train", "histogram", "--target", "/definitely/missing", "--out", "/tmp/x"],
            "not an existing folder",
        ),
        (["report", "/definitely/missing", "--out", "/tmp/x"], "no manifest rows"),
        (["synth", "/tmp/x", "--site", "no-such-site", "--n-per-site", "1"], "no-such-site"),
        (["train", "histogram", "--out", "/tmp/x"], "Missing option"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_reason(args, message, capsys) -> None:
    assert _cli(*args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_synth_train_run_report_chain(tmp_path, capsys) -> None:
    archive, model, out = tmp_path / "archive", tmp_path / "model", tmp_path / "run"
    assert (
        _cli(
            "synth",
            str(archive),
            "--site",
            TARGET,
            "--site",
            SOURCE,
            "--n-per-site",
            "3",
            "--matrix",
            "128",
            "--seed",
            "5",
            "--no-progress",
        )
        == 0
    )
    labels = pd.read_parquet(archive / "labels.parquet")
    assert sorted(labels.site.value_counts().items()) == [(SOURCE, 3), (TARGET, 3)]
    assert (
        _cli(
            "train", "nyul", "--target", str(archive / TARGET), "--out", str(model), "--no-progress"
        )
        == 0
    )
    assert (model / "harmonizer.json").is_file()
    assert (
        _cli(
            "run",
            "--method",
            "nyul",
            "--model",
            str(model),
            "--input",
            str(archive / SOURCE),
            "--out",
            str(out),
            "--labels",
            str(archive / "labels.parquet"),
            "--executor",
            "local",
            "--no-progress",
        )
        == 0
    )
    assert "3 objects (ok 3)" in capsys.readouterr().out
    assert _cli("report", str(out), "--out", str(tmp_path / "report")) == 0
    captured = capsys.readouterr()
    assert "| nyul | 3 | 0 |" in captured.out
    assert (tmp_path / "report" / "report.html").is_file()


@pytest.mark.slow
def test_demo_runs_end_to_end_on_ray(tmp_path, ray_session, capsys) -> None:
    assert _cli("demo", str(tmp_path / "demo"), "--n-per-site", "4", "--matrix", "128") == 0
    out = capsys.readouterr().out
    assert "| histogram | 4 | 0 |" in out and "| nyul | 4 | 0 |" in out
    assert Path(out.strip().splitlines()[-1].split(": ", 1)[1]).is_file()


def test_train_unit_names_a_missing_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-archive")
    code = _cli("train", "unit", "--source", missing, "--target", "b", "--out", str(tmp_path))
    assert code == 2
    err = capsys.readouterr().err
    assert f'"{missing}" is not an existing folder or file; check the path' in err
