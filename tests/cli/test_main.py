"""The command line as users and scripts call it: the command tree's help, exit codes and
one-line reasons, and the whole synth → train → run → report chain."""

from __future__ import annotations

import subprocess
import sys

import click
import pandas as pd
import pytest

from harmonize.cli.main import EXIT_STATUS, cli

from conftest import SOURCE, TARGET, run_cli

HEAVY = ("torch", "numpy", "pydicom", "ray", "pyarrow", "pandas")


def _commands(group: click.Group, path: str = "harmonize") -> list[tuple[str, click.Command]]:
    """Every command and subcommand under ``group`` (itself included), by its command line."""
    found: list[tuple[str, click.Command]] = [(path, group)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} {name}")
        else:
            found.append((f"{path} {name}", command))
    return found


def test_help_is_instant_and_lists_the_contract_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "harmonize.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for command in ("synth", "train", "run", "report", "experiment", "submit", "demo", "bench"):
        assert f"  {command} " in out
    assert "Exit status:" in out and "2    bad usage or input" in out
    code = (
        "import sys\nfrom harmonize.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        f"print('loaded:', *[m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands:" in done.stdout
    assert done.stdout.splitlines()[-1] == "loaded:"  # heavy libraries load inside commands only


def test_every_option_of_every_command_has_help() -> None:
    commands = _commands(cli)
    assert len(commands) >= 20 and all(command.help for _, command in commands)
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in commands
        for param in command.params
        if isinstance(param, click.Option) and param.name != "help" and not param.help
    ]
    assert missing == []


def test_the_root_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--help") == 0
    out = capsys.readouterr().out
    for line in EXIT_STATUS.splitlines()[2:]:
        assert line.strip() in out


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
        (["bench", "ssim", "--sizes", "512,abc"], '"512,abc" is not a list of positive integers'),
        (["bench", "ssim", "--sizes", "512,0"], "positive integers like 512,1024"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_reason(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("harmonize: error: ") and len(err.strip().splitlines()) == 1


def test_a_bare_group_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("train") == 2
    captured = capsys.readouterr()
    assert "Commands:" in captured.out + captured.err and "histogram" in captured.out + captured.err


def test_synth_train_run_report_chain(tmp_path, capsys) -> None:
    archive, model, out = tmp_path / "archive", tmp_path / "model", tmp_path / "run"
    assert (
        run_cli(
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
        run_cli(
            "train", "nyul", "--target", str(archive / TARGET), "--out", str(model), "--no-progress"
        )
        == 0
    )
    assert (model / "harmonizer.json").is_file()
    assert (
        run_cli(
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
    assert "3 objects (ok 3)" in capsys.readouterr().err  # the summary line goes to stderr
    assert run_cli("report", str(out), "--out", str(tmp_path / "report")) == 0
    captured = capsys.readouterr()
    assert "| nyul | 3 | 0 |" in captured.out
    assert (tmp_path / "report" / "report.html").is_file()
