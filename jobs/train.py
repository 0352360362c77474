"""Ray Job entry point: train a neural harmonizer from a training YAML and two archives.

    python jobs/train.py --config jobs/configs/cyclegan.yaml \
        --source s3://pacs/montgomery --target s3://pacs/shenzhen --out s3://models/cyclegan-v1 \
        --gpus 8

Prints the summary as one JSON line (job logs are read by machines as often as by people).
`--dry-run` prints the resolved settings and exits. Local paths may be relative (made absolute
here, before they travel to the Ray Train workers); --config may name a packaged config
(``cyclegan-cpu-quick``).
"""

from __future__ import annotations

import json

import click
from common import config_option, job_storage, run_command

from harmonize.cli.common import CONFIG, URI


@click.command(name="train")
@config_option(
    "cyclegan.yaml", "Training YAML: a path, an s3:// URI or a packaged config's name.", CONFIG
)
@click.option("--source", required=True, type=URI, help="Source-site archive (domain A).")
@click.option("--target", required=True, type=URI, help="Target-site archive (domain B).")
@click.option("--out", required=True, type=URI, help="Output prefix (model, checkpoints/, cache/).")
@click.option("--gpus", type=click.IntRange(0), default=0, show_default=True, help="GPU workers.")
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
    workers_of = {"gpus": gpus, "workers": workers}  # what Ray Train gets, as --dry-run says
    if dry_run:
        inputs = {"source": source, "target": target, "out": out}
        click.echo(json.dumps({**inputs, **workers_of, "training": config.to_dict()}))
        return
    from harmonize.distributed.train import train_distributed
    from harmonize.training.job import gan_job

    job = gan_job(config, source, target)
    summary = train_distributed(job, out, storage=storage, progress=False, **workers_of)
    click.echo(json.dumps(summary, default=str))


if __name__ == "__main__":
    run_command(main)
