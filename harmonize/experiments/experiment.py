"""`harmonize experiment`: the paper's benchmark end to end, on synthetic sites or a user's own
two-site data.

    the train/ and test/ archives: synthesized (the target site and one source site per shift
      family, labelled; the test split with the source images' paired truth: the same patients
      imaged at the target site), or a user's source and target archives split by a hash of
      image_id (``harmonize.experiments.split``)
      → train the classifier on the target site's training images only (once)
      → per family (source site): a site detector on both sites' training images (which site
        is this image from?); every method fitted / trained on unpaired training images
        (source → target); the source's test images through each method, with the classifier,
        and the target's (the in-domain AUC, and what each method does to images that already
        look right); the site detector's AUC on the test originals and on each method's
        harmonized images
      → one report per family (Tables 1, 2 and 3, ROC, histograms) under OUT/report/SOURCE/

Each step is the same function the CLI calls (``synthesize_archive``, ``train_classifier``,
``fit_classical``, ``training.gan.train``, ``run_harmonization``, ``build_report``), here in one
process with the executor it is given for the runs. The training and test archives use
different seeds, so the images scored are never the ones any model learnt from.

Example::

    result = run_experiment(ExperimentConfig.quick(), "out/experiment", executors=make_executor)
    for family in result.families:
        print(family.report.markdown)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from harmonize.classifier.config import ClassifierConfig
from harmonize.experiments.config import ExperimentConfig
from harmonize.experiments.site import site_aucs, site_section, train_site_detector
from harmonize.experiments.steps import Steps
from harmonize.experiments.training import classifier_settings, fit, train_target_classifier
from harmonize.io.storage import Storage, join
from harmonize.models.registry import METHODS, NEURAL
from harmonize.report import Report, build_report
from harmonize.report.guide import recommend
from harmonize.run.orchestrate import ExecutorFactory, run_harmonization
from harmonize.run.spec import ExitCode, RunOptions

RESULTS_FILE = "experiment.json"


class Archives(NamedTuple):
    """The experiment's train/ and test/ archives and their site folders."""

    train: str
    test: str
    target: str  # the target site's folder (and ``site`` in the labels tables)
    sources: tuple[str, ...]  # each shift family's source site folder
    key: str  # what the archives hold (``Steps.key``): later steps' keys depend on it


def _synthesize(
    config: ExperimentConfig, out_uri: str, store: Storage, steps: Steps, progress: bool
) -> Archives:
    """The train/ and test/ archives (the target and every source site, labelled; the test
    split's source images also imaged at the target site, the paired truth the runs measure
    against)."""
    from harmonize.synth import load_profile, synthesize_archive

    uris = {split: join(out_uri, "archive", split) for split in ("train", "test")}
    sites = [config.target_site, *config.source_sites]
    # A site given by name or YAML path: its settings (a YAML's edits change the archive) and
    # its archive folder (synth writes OUT/<name>/).
    profiles = [load_profile(site) for site in sites]
    settings = [asdict(profile) for profile in profiles]
    keys = []
    for split, seed, n in (
        ("train", config.seed, config.n_train),
        ("test", config.seed + 1, config.n_test),
    ):
        truth = config.target_site if split == "test" else None

        def synthesize(uri: str = uris[split], n: int = n, seed: int = seed,
                       truth: str | None = truth) -> None:  # fmt: skip
            synthesize_archive(
                uri, sites, n, seed=seed, storage=store, matrix=config.matrix, progress=progress,
                lesion_strength=config.lesion_strength, prevalence=config.prevalence,
                truth_site=truth,
            )  # fmt: skip

        shape = (n, seed, config.matrix, config.lesion_strength, config.prevalence, truth)
        key = steps.key("synth", uris[split], sites, settings, shape)
        text = f"synthesizing the {split} archive: {n} images per site"
        steps.run(f"synth_{split}", text, key, synthesize)
        keys.append(key)
    target, *sources = (profile.name for profile in profiles)
    return Archives(uris["train"], uris["test"], target, tuple(sources), steps.key(*keys))


def _split(config: ExperimentConfig, out_uri: str, store: Storage, steps: Steps) -> Archives:
    """A user's two archives split into train/ and test/ by a hash of image_id."""
    from harmonize.experiments.split import split_archive

    done = steps.start("split", "splitting the archives by a hash of image_id")
    split = split_archive(config, join(out_uri, "archive"), store, steps.echo)
    steps.echo(f"    {split.line()}")
    done()
    # The split's content, not the archives' URIs: images added at a site change the key.
    tables = [store.read(join(uri, "labels.parquet")) for uri in (split.train, split.test)]
    key = steps.key(
        "split", split.train, split.test, [hashlib.sha256(t).hexdigest() for t in tables]
    )
    return Archives(split.train, split.test, split.target, (split.source,), key)


class _Run(NamedTuple):
    out_uri: str  # the run's output folder
    input_uri: str
    method: str
    model_uri: str
    mode: str
    what: str  # what the step says

    def arguments(self) -> dict[str, str]:
        """The ``run_harmonization`` arguments this run names."""
        return {k: v for k, v in self._asdict().items() if k != "what"}


def _family_runs(
    config: ExperimentConfig, source_test: str, family_uri: str, models: dict[str, str]
) -> list[_Run]:
    """The source's test images through every method and mode of one family."""
    what = f"harmonizing the {source_test.rsplit('/', 1)[-1]} test images"
    runs = []
    for method, model in models.items():
        modes = config.modes if METHODS[method].kind == NEURAL else ("direct",)
        for mode in modes:
            name = f"{method}-{mode}" if METHODS[method].kind == NEURAL else method
            runs.append(_Run(join(family_uri, name), source_test, method, model, mode, what))
    return runs


def _execute(run: _Run, executor: Any, shared: _Shared, store: Storage, steps: Steps,
             name: str, key: str) -> None:  # fmt: skip
    """One run as a step: redone until every object of it ended ok."""

    def work() -> dict[str, Any]:
        summary = run_harmonization(
            **run.arguments(), executor=executor, classifier_uri=shared.classifier_uri,
            storage=store, options=shared.options,
        )  # fmt: skip
        return {"line": summary.line(), "complete": summary.exit_code == ExitCode.OK}

    outcome = steps.run(f"run_{name}", f"{run.what}: {name}", key, work, lambda r: r["complete"])
    steps.echo(f"    {outcome['line']}")


@dataclass(frozen=True)
class FamilyResult:
    """One shift family (source site → the target site): its runs (the source's test images
    through each method and mode), in-domain runs (the target's), site AUCs and report."""

    source: str
    target: str
    models: dict[str, str]
    runs: tuple[str, ...]
    in_domain_runs: tuple[str, ...]
    site_detector: dict[str, Any]
    report: Report


@dataclass(frozen=True)
class ExperimentResult:
    """Where an experiment wrote its results, each family's report and the seconds of each
    step."""

    out_uri: str
    families: tuple[FamilyResult, ...]
    seconds: dict[str, float]


class _Shared(NamedTuple):
    """What every family of one experiment uses."""

    archives: Archives
    settings: ClassifierConfig
    classifier_uri: str
    classifier_key: str  # the classifier step's key (``Steps.key``)
    options: RunOptions


def _training_settings(config: ExperimentConfig, method: str, store: Storage) -> Any:
    """What a method's fit depends on besides the archive: a neural method's training config
    (the file's text, not its path) and step override; nothing for a classical one."""
    if METHODS[method].kind != NEURAL:
        return None
    return [store.read_text(config.gan_config(method)), config.gan_steps]


def _family(
    config: ExperimentConfig,
    shared: _Shared,
    source: str,
    out_uri: str,
    executor: Any,
    store: Storage,
    steps: Steps,
    progress: bool,
) -> FamilyResult:
    """One family: its site detector, every method fitted, the runs, the site AUCs and the
    report (its folders: OUT/models/SOURCE/, OUT/runs/SOURCE/ and OUT/report/SOURCE/)."""
    archives = shared.archives
    detector_uri = join(out_uri, "models", source, "site-detector")
    detector_key = steps.key("site_detector", source, detector_uri, shared.classifier_key)
    detector_auc = steps.run(
        f"site_detector_{source}",
        f"training the site detector: {source} or {archives.target}?",
        detector_key,
        lambda: train_site_detector(
            shared.settings, archives.train, archives.target, detector_uri, store, progress,
            sources=(source,),
        ),
    )  # fmt: skip
    steps.echo(f"    validation AUC {detector_auc:.3f}")

    models: dict[str, str] = {}
    model_keys: dict[str, str] = {}
    for method in config.methods:
        models[method] = uri = join(out_uri, "models", source, method)
        model_keys[method] = key = steps.key(
            "fit", source, method, uri, archives.key, _training_settings(config, method, store)
        )

        def work(method: str = method, uri: str = uri) -> None:
            fit(
                config, method, join(archives.train, source),
                join(archives.train, archives.target), uri, store, steps.echo, progress,
            )  # fmt: skip

        steps.run(f"fit_{source}_{method}", f"fitting {method} ({source} → target)", key, work)

    source_test = join(archives.test, source)
    runs = _family_runs(config, source_test, join(out_uri, "runs", source), models)
    # The target's own test images through every method too: the in-domain AUC, and what
    # each method does to images that already look right (it should change nothing).
    in_domain = _family_runs(
        config, join(archives.test, archives.target),
        join(out_uri, "runs", source, "in-domain"), models,
    )  # fmt: skip
    run_keys = []
    for run in [*runs, *in_domain]:
        name = run.out_uri.removeprefix(join(out_uri, "runs") + "/").replace("/", "_")
        run_keys.append(
            steps.key("run", run.arguments(), model_keys[run.method], shared.classifier_key)
        )
        _execute(run, executor, shared, store, steps, name, run_keys[-1])

    harmonized = {run.out_uri.rsplit("/", 1)[-1]: run.out_uri for run in runs}
    site: dict[str, float] = steps.run(
        f"site_aucs_{source}",
        "asking the site detector about every run's images",
        steps.key("site_aucs", detector_key, run_keys),
        lambda: site_aucs(
            detector_uri, join(archives.test, archives.target), {"original": source_test},
            harmonized, store,
        ),
    )  # fmt: skip
    steps.echo("    " + ", ".join(f"{name} {auc:.3f}" for name, auc in site.items()))

    done = steps.start(f"report_{source}", f"writing the report of {source} → {archives.target}")
    run_uris = tuple(r.out_uri for r in runs)
    in_domain_uris = tuple(r.out_uri for r in in_domain)
    report = build_report(
        [*run_uris, *in_domain_uris],
        join(out_uri, "report", source),
        storage=store,
        target_site=archives.target,
        extra_sections=(site_section(site, detector_auc, archives.target),),
    )
    done()
    detector = {"validation_auc": detector_auc, "auc": site}
    return FamilyResult(source, archives.target, models, run_uris, in_domain_uris, detector, report)


def run_experiment(
    config: ExperimentConfig,
    out_uri: str,
    *,
    executors: ExecutorFactory,
    storage: Storage | None = None,
    echo: Callable[[str], Any] = print,
    progress: bool = False,
    fresh: bool = False,
) -> ExperimentResult:
    """Run the whole benchmark into ``out_uri`` (archive/, models/, runs/, report/ — one
    folder per family under the last three — and experiment.json); returns where everything
    went and each family's report. ``executors`` makes the runs' executor from
    ``config.executor`` (the command line passes the distributed stream's ``make_executor``).

    Started again into the same ``out_uri``, it continues: every step an earlier run finished
    with the same inputs is read back instead of done again (``experiments.steps``; OUT/steps/),
    unless ``fresh``."""
    store = storage or Storage()
    steps = Steps(echo, store, out_uri, fresh=fresh)
    if config.user_archive:
        archives = _split(config, out_uri, store, steps)
    else:
        archives = _synthesize(config, out_uri, store, steps, progress)

    classifier_uri = join(out_uri, "models", "classifier")
    settings = classifier_settings(config, store)  # the site detectors train with them too
    classifier_key = steps.key("classifier", classifier_uri, archives.key, asdict(settings))
    classifier_auc = steps.run(
        "classifier",
        f"training the classifier on {archives.target} (train split)",
        classifier_key,
        lambda: train_target_classifier(
            settings, archives.train, archives.target, classifier_uri, store, progress
        ),
    )
    echo(f"    validation AUC {classifier_auc:.3f}")

    executor = executors(config.executor)
    options = RunOptions(labels_uri=join(archives.test, "labels.parquet"), progress=progress)
    shared = _Shared(archives, settings, classifier_uri, classifier_key, options)
    families = tuple(
        _family(config, shared, source, out_uri, executor, store, steps, progress)
        for source in archives.sources
    )

    steps.seconds["total"] = round(time.perf_counter() - steps.started, 3)
    record = {
        "config": config.to_dict(),
        "classifier_validation_auc": classifier_auc,
        "families": {
            f.source: {
                "target": archives.target,
                "site_detector": f.site_detector,
                "models": f.models,
                "runs": list(f.runs),
                "in_domain_runs": list(f.in_domain_runs),
                "report": f.report.html_path,
                "recommendation": _recommendation(f.report),
            }
            for f in families
        },
        "seconds": steps.seconds,
        "reused_steps": steps.reused,
    }
    store.write_text(join(out_uri, RESULTS_FILE), json.dumps(record, indent=2) + "\n")
    return ExperimentResult(out_uri, families, steps.seconds)


def _recommendation(report: Report) -> dict[str, str | None] | None:
    """The method guide's choice on a family's own figures (``harmonize.report.guide``)."""
    choice = None if report.classifier is None else recommend(report.classifier, report.summaries)
    return None if choice is None else {"configuration": choice.label, "why": choice.sentence}
