"""The one training loop: a run that crashed and resumed equals an uninterrupted one bit for bit,
for a GAN and for the classifier; outputs and resume on a real S3 server."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

import pytest

from harmonize.classifier.training import train_classifier
from harmonize.io.storage import Storage, join
from harmonize.models.registry import load_model
from harmonize.training.checkpoint import checkpoint_uri, latest_checkpoint, load_checkpoint
from harmonize.training.gan import train
from harmonize.training.task import TrainResult

from training_samples import (
    GAN_TINY,
    Crash,
    assert_same_state,
    blob_data,
    classifier_config,
    crash_at,
    gan_config,
    logged,
)


@pytest.fixture(params=["cyclegan", "classifier"])
def six_steps(request: pytest.FixtureRequest) -> tuple[Callable[..., TrainResult], str]:
    """A 6-step run of either kind, logged every step and saved every 3, as ``run(out, **kw)``,
    and the name of its networks' part of a checkpoint."""
    if request.param == "cyclegan":
        config = gan_config(
            steps=6, log_every=1, checkpoint_every=3, model={**GAN_TINY, "pool_size": 2}
        )
        return partial(train, config, request.getfixturevalue("data")), "recipe"
    config = classifier_config(steps=6, log_every=1, validate_every=3, checkpoint_every=3)
    return partial(train_classifier, config, blob_data(), device="cpu"), "model"


def test_resume_after_a_crash_continues_exactly(tmp_path, six_steps) -> None:
    run, networks = six_steps
    straight, crashed = str(tmp_path / "straight"), str(tmp_path / "crashed")
    run(straight, progress=False)
    with pytest.raises(Crash):
        run(crashed, report=crash_at(5), progress=False)
    assert latest_checkpoint(crashed) == checkpoint_uri(crashed, 3)
    result = run(crashed, progress=False)  # a new task, resumed from step 3
    assert result.start_step == 3
    assert [m["step"] for m in logged(crashed)] == [1, 2, 3, 4, 5, 6]  # steps 4-5 logged once
    assert logged(crashed) == logged(straight)  # the same next-step losses, bit for bit
    ours = load_checkpoint(checkpoint_uri(crashed, 6), Storage())
    theirs = load_checkpoint(checkpoint_uri(straight, 6), Storage())
    assert_same_state(ours[networks], theirs[networks], networks)  # weights, optimizers, pools
    assert_same_state(ours["random"]["sampler"], theirs["random"]["sampler"], "sampler")


@pytest.mark.slow
def test_train_to_s3_writes_everything_there_and_resumes_from_it(s3_server, data) -> None:
    storage = Storage(endpoint_url=s3_server.endpoint_url)
    out = join(s3_server.create_bucket("training-test"), "cyclegan")
    config = gan_config(steps=4, log_every=2, checkpoint_every=2)
    result = train(config, data, out, storage=storage)
    names = {o.uri.removeprefix(out + "/") for o in storage.list(out)}
    assert {"metrics.jsonl", "harmonizer.json", "weights.safetensors"} <= names
    assert {"checkpoints/step-0000002.pt", "checkpoints/step-0000004.pt"} <= names
    assert any(name.startswith("tensorboard/events.out.tfevents.") for name in names)
    assert result.checkpoint_uri == latest_checkpoint(out, storage)
    assert load_model(out, storage).card["n_images"] == {"source": 4, "target": 4}
    longer = train(gan_config(steps=6, log_every=2, checkpoint_every=2), data, out, storage=storage)
    assert longer.start_step == 4 and latest_checkpoint(out, storage) == checkpoint_uri(out, 6)
    steps = [
        json.loads(x)["step"]
        for x in storage.read_text(join(out, "metrics.jsonl")).split("\n")
        if x
    ]
    assert steps == [2, 4, 6]
