"""Ray Job entry point: train a neural harmonizer from a training YAML and two archives.

    python jobs/train.py --config jobs/configs/cyclegan.yaml \
        --source s3://pacs/montgomery --target s3://pacs/shenzhen --out s3://models/cyclegan-v1 \
        --gpus 8

Prints the summary as one JSON line (job logs are read by machines as often as by people).
`--dry-run` prints the resolved settings and exits.
"""

from __future__ import annotations

import json

import click
from common import CONFIGS, job_storage, run_command


@click.command(name="train")
@click.option("--config", "config_uri", default=str(CONFIGS / "cyclegan.yaml"), show_default=True)
@click.option("--source", required=True, help="Source-site archive (domain A).")
@click.option("--target", required=True, help="Target-site archive (domain B).")
@click.option("--out", required=True, help="Output prefix (model, checkpoints/, cache/).")
@click.option("--gpus", type=click.IntRange(0), default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=None, help="CPU workers (no GPU).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Override the steps.")
@click.option("--dry-run", is_flag=True, help="Print the resolved settings and exit.")
def main(
    config_uri: str,
    source: str,
    target: str,
    out: str,
    gpus: int,
    workers: int | None,
    steps: int | None,
    dry_run: bool,
) -> None:
    """Train with Ray Train (one worker per GPU) and print a JSON summary."""
    from harmonize.training.config import load_train_config

    storage = job_storage()
    config = load_train_config(config_uri, storage, steps=steps)
    if dry_run:
        job = {"source": source, "target": target, "out": out, "gpus": gpus, "workers": workers}
        click.echo(json.dumps({**job, "training": config.to_dict()}))
        return
    from harmonize.distributed.train import train_distributed
    from harmonize.training.job import gan_job

    summary = train_distributed(
        gan_job(config, source, target),
        out,
        gpus=gpus,
        workers=workers,
        storage=storage,
        progress=False,
    )
    click.echo(json.dumps(summary, default=str))


if __name__ == "__main__":
    run_command(main)
