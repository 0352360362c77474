"""The README is executable: `make demo` and its "Using it" commands, as written, from folders
outside the checkout, with harmonize installed from a freshly built wheel; and its pandas and SQL
snippets (`make test`, the other first command, is what CI runs).

The wheel goes into a fresh virtual environment at ``TMP/.venv`` (so the README's own
``. .venv/bin/activate`` is the line that activates it). Its dependencies are borrowed from the
checkout's environment through a ``.pth`` line (installing torch and Ray again would cost
minutes); ``HARMONIZE_WHEEL_FULL_INSTALL=1`` installs every dependency from the index instead.
Only sizes and steps are shrunk, by flags appended to the commands. The commands find a Ray
head through ``RAY_ADDRESS``, as the README documents (one head for all of them instead of a
Ray started and stopped by each; a Ray of the command's own is tested in tests/cli).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ray_heads import ray_head

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

#: Flags appended to a README command, by its first words: sizes and steps only.
SHRINK = {
    "harmonize synth data/archive": "--n-per-site 16 --matrix 128",
    "harmonize synth data/real": "--matrix 128",
    "harmonize train cyclegan": "--steps 2 --no-progress",
    "harmonize train unit": "--steps 2 --no-progress",
    "harmonize train classifier": "--steps 2 --no-progress",
    "harmonize run": "--no-progress",
    "harmonize experiment --out out/own": "--quick",  # your archive: its own sizes
    "harmonize experiment": "--quick --n-train 8 --n-test 8 --matrix 96",
}


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def readme_commands() -> list[str]:
    """The shell commands of the "Using it" section's first bash block, continuation lines
    joined, comments dropped."""
    block = _blocks(_section("Using it"), "bash")[0].replace("\\\n", " ")
    lines = [line.split(" #", 1)[0].strip() for line in block.splitlines()]
    return [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


def shrunk(command: str) -> str:
    for start, flags in SHRINK.items():
        if command.startswith(start):
            return f"{command} {flags}"
    return command


def _fresh_venv(folder: Path) -> Path:
    """A new virtual environment at ``folder/.venv`` with harmonize installed from a wheel
    built from this checkout; returns its python."""
    source, dist = (
        folder / "source",
        folder / "dist",
    )  # built from a copy: no build/ in the checkout
    shutil.copytree(
        REPO / "harmonize", source / "harmonize", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(dist), str(source)], check=True, timeout=300, cwd=folder)
    (wheel,) = dist.glob("harmonize-*.whl")
    venv = folder / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if os.environ.get("HARMONIZE_WHEEL_FULL_INSTALL"):
        subprocess.run([*install, "torch==2.13.0"], check=True, timeout=1800)
        subprocess.run([*install, str(wheel)], check=True, timeout=1800)
    else:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # The checkout's dependencies, after the fresh site-packages (which gets the wheel).
        Path(site, "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"])
        subprocess.run([*install, "--no-deps", str(wheel)], check=True, timeout=300)
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder outside the checkout holding ``.venv`` (harmonize from its wheel) and the
    bundled real images the README points at (``tests/data``)."""
    folder = tmp_path_factory.mktemp("user")
    python = _fresh_venv(folder)
    (folder / "tests").mkdir()
    (folder / "tests" / "data").symlink_to(REPO / "tests" / "data")
    where = subprocess.run(
        [str(python), "-c", "import harmonize; print(harmonize.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=folder,
    ).stdout.strip()
    assert Path(where).is_relative_to(folder / ".venv"), where  # the wheel, not the checkout
    yield folder


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    with ray_head(dashboard=False) as address:
        yield address


def _bash(
    script: str, cwd: Path, timeout: float, ray_address: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["RAY_ADDRESS"] = ray_address
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.timeout(1500)  # every README command, three experiments included (about 8 min)
def test_the_readme_commands_run_as_written(installed: Path, ray_address: str) -> None:
    commands = readme_commands()
    assert commands[0] == ". .venv/bin/activate" and len(commands) >= 8
    done = _bash("\n".join(shrunk(c) for c in commands), installed, 1500, ray_address)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for path in (
        "data/archive/labels.parquet",
        "models/histogram/harmonizer.json",
        "models/cyclegan/harmonizer.json",
        "models/unit/harmonizer.json",
        "models/classifier/classifier.json",
        "runs/cyclegan/manifest",
        "report/report.html",
        "out/experiment/experiment.json",
        "out/experiment/report/mc-like/report.html",
        "out/families/report/raw-dr/report.html",
        "out/families/report/cr-grid/report.html",
        "out/own/report/mc-like/report.html",
    ):
        assert (installed / path).exists(), path
    manifest = pd.read_parquet(installed / "runs" / "histogram" / "manifest")
    assert (manifest["status"] == "ok").all() and manifest["score_in"].notna().all()

    snippets = _blocks(_section("Using it"), "python")
    assert snippets, "the README shows how to read a manifest with pandas"
    for snippet in snippets:
        python = installed / ".venv" / "bin" / "python"
        ran = subprocess.run(
            [str(python), "-c", snippet], cwd=installed, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr

    import duckdb

    (sql,) = _blocks(_section("Using it"), "sql")
    query = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    cwd = Path.cwd()
    os.chdir(installed)  # the query's paths are relative, as a user would type them
    try:
        result = duckdb.sql(query).df()
    finally:
        os.chdir(cwd)
    assert set(result["method"]) >= {"histogram"} and (result.iloc[:, 1] > 0).all()


@pytest.mark.slow
def test_make_demo_runs_the_installed_wheel_as_written(installed: Path, ray_address: str) -> None:
    """`make demo`, the README's first command, from a folder outside the checkout holding the
    Makefile, the pyproject and a .venv with harmonize installed from the wheel: the demo runs
    from the installed package alone (its configs and profiles are package data)."""
    folder = installed / "elsewhere"
    folder.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        (folder / name).symlink_to(REPO / name)
    (folder / ".venv").symlink_to(installed / ".venv")
    assert subprocess.run(["make", "-q", "setup"], cwd=folder).returncode == 0  # no reinstall
    (command,) = [c for c in _blocks(README, "bash")[0].splitlines() if c.startswith("make demo")]
    assert command.split(" #")[0].strip() == "make demo"
    done = _bash("make demo 'DEMO_FLAGS=--n-per-site 6 --matrix 128'", folder, 600, ray_address)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (folder / "demo-out" / "report" / "report.html").is_file()
    assert "open the report" in done.stdout
