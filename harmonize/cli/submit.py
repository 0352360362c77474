"""`harmonize submit train|run|report|status|logs|stop|shutdown`: the same commands as Ray Jobs
on a cluster (or on harmonize's own local Ray head)."""

from __future__ import annotations

import sys
from typing import Any

import click

from harmonize.cli.common import LocalPath, s3_endpoint

SUBMITTED = ("train", "run", "report")  # the commands a job may run


def _address_option(where: str) -> Any:
    return click.option(
        "--address",
        help=f"The cluster's Jobs API, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, else "
        f"{where}).",
    )


#: --address of submit (where the job goes) and of status / logs / stop (where the job is).
SUBMIT_ADDRESS = _address_option(
    "harmonize's own local Ray head, started when it does not run; never another Ray found on "
    "a default port"
)
JOB_ADDRESS = _address_option("the local Ray head that `harmonize submit` started; none is started")


@click.group()
def submit() -> None:
    """Run train / run / report on a Ray cluster as a Ray Job (local Ray without --address)."""


def with_gpus(name: str, args: tuple[str, ...], gpus: int | None) -> list[str]:
    """The job's arguments with ``--gpus`` passed on: train's --gpus, run's --actors."""
    inner = list(args)
    if gpus is None:
        return inner
    if name == "report":
        raise click.UsageError("report uses no GPU; drop --gpus")
    flag = "--gpus" if name == "train" else "--actors"
    if any(a == flag or a.startswith(f"{flag}=") for a in inner):
        raise click.UsageError(f"give the GPU count once (--gpus), not also {flag}")
    return inner + [flag, str(gpus)] if gpus or name == "train" else inner


def _submit_command(name: str) -> None:
    @submit.command(
        name=name,
        context_settings={"ignore_unknown_options": True},
        help=f"Submit `harmonize {name} ARGS...` as a Ray Job; prints the job id. ARGS pass "
        "through unchanged; after `--`, even options named like these (--help, --address).",
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @SUBMIT_ADDRESS
    @click.option(
        "--gpus",
        type=click.IntRange(0),
        help="train: its --gpus (one worker per GPU); run: its --actors (one harmonizer per GPU).",
    )
    @click.option("--follow", is_flag=True, help="Stream the logs until the job ends.")
    @click.option(
        "--working-dir",
        type=LocalPath(exists=True, file_okay=False),
        help="Ship this harmonize checkout to the cluster (dev clusters; .venv and data left out).",
    )
    @click.option(
        "--aws-env/--no-aws-env",
        default=True,
        help="Pass this shell's AWS region and S3 endpoint (AWS_REGION, AWS_DEFAULT_REGION, "
        "AWS_ENDPOINT_URL) to the job; never a secret.",
    )
    @click.option(
        "--pass-aws-credentials",
        is_flag=True,
        help="Also pass AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN: they "
        "become part of the job's runtime_env, which the Ray dashboard and `ray job` show to "
        "anyone who can reach them. Prefer the cluster's own identity (IAM role, service "
        "account).",
    )
    @click.pass_context
    def command(
        ctx: click.Context,
        args: tuple[str, ...],
        address: str | None,
        gpus: int | None,
        follow: bool,
        working_dir: str | None,
        aws_env: bool,
        pass_aws_credentials: bool,
    ) -> None:
        from harmonize.distributed import jobs

        inner = with_gpus(name, args, gpus)
        env = jobs.aws_env(credentials=pass_aws_credentials) if aws_env else {}
        if s3_endpoint(ctx):
            env["AWS_ENDPOINT_URL"] = str(s3_endpoint(ctx))
        job = jobs.submit_job(
            name, inner, address=address, env=env, working_dir=working_dir, echo=click.echo
        )
        where = f" --address {job.address}"
        click.echo(f"submitted job {job.job_id} to {job.address}")
        click.echo(f"  follow: harmonize submit logs {job.job_id} --follow{where}")
        click.echo(f"  status: harmonize submit status {job.job_id}{where}")
        click.echo(f"  stop:   harmonize submit stop {job.job_id}{where}")
        if job.started_local_head:
            click.echo(
                "  (a local Ray head was started for it; it serves later jobs until "
                "`harmonize submit shutdown`)"
            )
        if follow:
            _follow(job.job_id, job.address)


def _follow(job_id: str, address: str | None) -> None:
    from harmonize.distributed import jobs

    final = jobs.follow_job(job_id, address, echo=lambda chunk: click.echo(chunk, nl=False))
    info = jobs.job_status(job_id, address)
    click.echo(f"job {job_id} {final}" + (f": {info['message']}" if info["message"] else ""))
    if final != "SUCCEEDED":
        sys.exit(1)  # the job failed (not a usage error: that is 2)


for _name in SUBMITTED:
    _submit_command(_name)


@submit.command(name="status")
@click.argument("job_id")
@JOB_ADDRESS
def submit_status(job_id: str, address: str | None) -> None:
    """The status of a submitted job (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    from harmonize.distributed import jobs

    info = jobs.job_status(job_id, address)
    message = f" ({info['message']})" if info["message"] else ""
    click.echo(f"{info['job_id']}: {info['status']}{message}")
    click.echo(f"  entrypoint: {info['entrypoint']}")


@submit.command(name="logs")
@click.argument("job_id")
@JOB_ADDRESS
@click.option("--follow", is_flag=True, help="Keep streaming until the job ends.")
def submit_logs(job_id: str, address: str | None, follow: bool) -> None:
    """The logs of a submitted job (so far, or streamed with --follow)."""
    from harmonize.distributed import jobs

    if follow:
        _follow(job_id, address)
    else:
        click.echo(jobs.job_logs(job_id, address), nl=False)


@submit.command(name="stop")
@click.argument("job_id")
@JOB_ADDRESS
def submit_stop(job_id: str, address: str | None) -> None:
    """Stop a submitted job."""
    from harmonize.distributed import jobs

    if jobs.stop_job(job_id, address):
        click.echo(f"stop requested for {job_id}")
    else:
        click.echo(f"{job_id} had already finished: {jobs.job_status(job_id, address)['status']}")


@submit.command(name="shutdown")
def submit_shutdown() -> None:
    """Stop the local Ray head that `harmonize submit` started (never any other Ray)."""
    from harmonize.distributed.local_head import stop_owned_head

    url = stop_owned_head()
    click.echo(f"stopped the local Ray head at {url}" if url else "no local Ray head to stop")
