"""An experiment started again continues where it stopped: a step finished with the same inputs
is read back, a step whose inputs changed (and every step after it) is done again, and an
unfinished step (it raised, or its run left error rows) is redone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmonize.distributed.stream import make_executor
from harmonize.experiments.config import ExperimentConfig
from harmonize.experiments.experiment import run_experiment
from harmonize.experiments.steps import Steps
from harmonize.io.manifest import read_manifest
from harmonize.io.storage import Storage

from conftest import SOURCE


def test_a_step_is_reused_only_with_the_same_key_and_once_it_finished(tmp_path: Path) -> None:
    store, calls, said = Storage(), [], []

    def steps(fresh: bool = False) -> Steps:
        return Steps(said.append, store, str(tmp_path), fresh=fresh)

    def work(value: float):
        return lambda: calls.append(value) or value

    key = Steps.key("classifier", {"steps": 10}, "archive-key")
    assert key == Steps.key("classifier", {"steps": 10}, "archive-key")  # stable
    assert steps().run("classifier", "training", key, work(0.8)) == 0.8
    assert steps().run("classifier", "training", key, work(0.1)) == 0.8  # read back
    assert calls == [0.8] and said[-1].endswith("training: done by an earlier run of this "
                                                "experiment (reused)")  # fmt: skip
    other = Steps.key("classifier", {"steps": 11}, "archive-key")
    assert steps().run("classifier", "training", other, work(0.7)) == 0.7  # inputs changed
    assert steps(fresh=True).run("classifier", "training", other, work(0.6)) == 0.6
    assert calls == [0.8, 0.7, 0.6]

    def interrupted() -> float:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        steps().run("site", "detecting", key, interrupted)
    assert not (tmp_path / "steps" / "site.json").exists()  # redone next time
    incomplete = {"complete": False}
    steps().run("run", "running", key, lambda: incomplete, lambda r: r["complete"])
    assert not (tmp_path / "steps" / "run.json").exists()  # a run with error rows is retried
    (tmp_path / "steps" / "classifier.json").write_text("{not json")
    assert steps().run("classifier", "training", other, work(0.5)) == 0.5  # unreadable: redo


@pytest.mark.slow
def test_an_experiment_started_again_reuses_what_it_finished(tmp_path: Path) -> None:
    def experiment(methods: tuple[str, ...]) -> dict:
        config = ExperimentConfig.quick(
            n_train=8, n_test=8, matrix=96, executor="local", methods=methods
        )
        run_experiment(config, str(tmp_path), executors=make_executor, echo=lambda _: None)
        return json.loads((tmp_path / "experiment.json").read_text())

    def processed(record: dict) -> dict[str, list]:
        family = record["families"][SOURCE]
        return {
            uri: sorted(read_manifest(uri).to_pandas().processed_at)
            for uri in family["runs"] + family["in_domain_runs"]
        }

    first = experiment(("histogram",))
    assert first["reused_steps"] == []
    before = processed(first)
    second = experiment(("histogram",))
    assert set(second["reused_steps"]) == {
        "synth_train", "synth_test", "classifier", f"site_detector_{SOURCE}",
        f"fit_{SOURCE}_histogram", f"run_{SOURCE}_histogram", f"run_{SOURCE}_in-domain_histogram",
        f"site_aucs_{SOURCE}",
    }  # fmt: skip
    assert processed(second) == before  # no object was harmonized again
    assert second["families"] == first["families"]  # the same figures, read back
    assert second["classifier_validation_auc"] == first["classifier_validation_auc"]
    # A method added: only its fit and runs, and the site AUCs that cover every run, are new.
    third = experiment(("histogram", "nyul"))
    redone = {f"fit_{SOURCE}_nyul", f"run_{SOURCE}_nyul", f"run_{SOURCE}_in-domain_nyul"}
    assert set(second["reused_steps"]) - set(third["reused_steps"]) == {f"site_aucs_{SOURCE}"}
    assert redone.isdisjoint(third["reused_steps"]) and redone <= set(third["seconds"])
    assert {uri: v for uri, v in processed(third).items() if uri in before} == before
