"""The job entry points a cluster runs (jobs/*.py), their example configs, and the cluster files
users start from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import SOURCE

REPO = Path(__file__).resolve().parents[2]


def _script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_job_scripts_help_and_dry_run() -> None:
    for name in ("train", "run", "report", "nightly"):
        done = _script(name, "--help")
        assert done.returncode == 0, done.stderr
        assert "--config" in done.stdout
    done = _script(
        "train", "--source", "a", "--target", "b", "--out", "c", "--gpus", "8", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    assert resolved["gpus"] == 8 and resolved["training"]["crop_size"] == 256
    done = _script("nightly", "--config", "/definitely/missing.yaml")
    assert done.returncode == 2 and 'cannot read "/definitely/missing.yaml"' in done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "out: o\nmethods: [{method: histogram, model: m}]\nnight: 1\n",
            "line 3: unknown job settings ['night']",
        ),
        (
            "out: o\nmethods:\n  - method: histogram\n    model: m\n    mdoe: curve\n",
            "line 5: unknown job methods entry settings ['mdoe']",
        ),
        (
            "out: o\nmethods: [{method: histogram, model: m, mode: curve}]\n",
            "job methods entry histogram mode must be one of direct, got 'curve'",
        ),
        ("out: o\nmethods: [{method: hist, model: m}]\n", 'unknown method "hist"'),
        (
            "out: o\nmethods: [{method: histogram, model: m}]\nrun: {actors: 0}\n",
            "job run actors must be an integer >= 1, got 0",
        ),
        (
            "out: o\nmethods: [{method: histogram, model: m}]\nrun: {gpu_decode: maybe}\n",
            "job run gpu_decode must be true or false, got 'maybe'",
        ),
        ("out: o\nmethods: []\n", "job methods must be a list of runs, got []"),
        ("out: o\nmethods: [{method: histogram, model: m}]\n", "the job needs archive"),
    ],
)
def test_job_configs_are_checked_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(text)
    done = _script("run", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and f"{config}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_nightly_runs_each_method_then_reports_and_is_idempotent(
    archive: Path, histogram_model: str, classifier_model: str, tmp_path: Path
) -> None:
    config = tmp_path / "nightly.yaml"
    out = tmp_path / "nightly"
    config.write_text(
        yaml.safe_dump(
            {
                "archive": str(archive / SOURCE),
                "out": str(out),
                "labels": str(archive / "labels.parquet"),
                "classifier": classifier_model,
                "methods": [{"method": "histogram", "model": histogram_model}],
                "run": {"executor": "local"},
            }
        )
    )
    for _night in (1, 2):
        done = _script("nightly", "--config", str(config))
        assert done.returncode == 0, done.stderr
        assert (out / "report" / "report.html").is_file()
        assert "## Classifier ROC AUC" in done.stdout  # the job's classifier scored every image
    rows = pd.read_parquet(out / "runs" / "histogram" / "manifest")
    assert len(rows) == 8 and (rows.status == "ok").all() and rows.score_out.notna().all()
    nights = pd.read_parquet(out / "runs" / "histogram" / "summaries").sort_values("started_at")
    # Night 2 redid nothing and added one summary record, not a row per object.
    assert nights[["listed", "ok", "skipped", "error"]].values.tolist() == [
        [8, 8, 0, 0],
        [8, 0, 8, 0],
    ]
    assert nights.listing_sha256.nunique() == 1


def test_example_configs_load() -> None:
    from harmonize.training.config import load_train_config

    config = load_train_config(str(REPO / "jobs" / "configs" / "cyclegan.yaml"))
    assert (config.method, config.crop_size, config.load_size) == ("cyclegan", 256, 286)
    sys.path.insert(0, str(REPO / "jobs"))
    try:
        from common import MethodRun, load_job
    finally:
        sys.path.remove(str(REPO / "jobs"))
    from harmonize.io.storage import Storage

    nightly = load_job(str(REPO / "jobs" / "configs" / "nightly.yaml"), Storage())
    assert [m.name for m in nightly.methods] == ["histogram", "cyclegan-curve"]
    assert nightly.run.executor == "ray" and nightly.archive
    assert nightly.run.gpu_decode is None  # auto: the actors decode when they hold GPUs
    # Without a mode an entry takes its method's default: the method guide's curve for a GAN.
    assert MethodRun("cyclegan", "m").mode == "curve"
    assert MethodRun("histogram", "m").mode == "direct"
    assert MethodRun("cut", "m", mode="local").mode == "local"


@pytest.mark.parametrize(
    "path",
    [
        "cluster/ray-cluster.yaml",
        "cluster/kuberay/raycluster.yaml",
        "cluster/kuberay/rayjob-train.yaml",
        "cluster/kuberay/cronjob-nightly.yaml",
    ],
)
def test_cluster_files_are_valid_yaml(path: str) -> None:
    docs = [d for d in yaml.safe_load_all((REPO / path).read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)
    if path.startswith("cluster/kuberay/"):
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc)
            assert "spec" in doc or doc["kind"] == "ConfigMap"
            if doc["kind"] == "ConfigMap":  # the nightly job's config, shipped to the head
                nightly = yaml.safe_load(doc["data"]["nightly.yaml"])
                assert {"archive", "out", "methods"} <= set(nightly)
    else:
        assert {"cluster_name", "provider", "available_node_types", "head_node_type"} <= set(
            docs[0]
        )
    assert "harmonize" in (REPO / path).read_text()


def test_dockerfile_installs_harmonize() -> None:
    text = (REPO / "cluster" / "Dockerfile").read_text()
    assert "FROM python:3.11" in text and "pip install" in text and "harmonize" in text
