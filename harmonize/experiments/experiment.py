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

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from harmonize.classifier.config import ClassifierConfig
from harmonize.experiments.config import ExperimentConfig
from harmonize.experiments.site import site_aucs, site_section, train_site_detector
from harmonize.experiments.training import classifier_settings, fit, train_target_classifier
from harmonize.io.storage import Storage, join
from harmonize.models.registry import METHODS, NEURAL
from harmonize.report import Report, build_report
from harmonize.report.guide import recommend
from harmonize.run.orchestrate import ExecutorFactory, run_harmonization
from harmonize.run.spec import RunOptions

RESULTS_FILE = "experiment.json"
Echo = Callable[[str], Any]


class _Steps:
    """Says each step as it starts (with the time since the first) and records its seconds."""

    def __init__(self, echo: Echo) -> None:
        self.echo, self.started = echo, time.perf_counter()
        self.seconds: dict[str, float] = {}

    def start(self, name: str, text: str) -> Callable[[], None]:
        self.echo(f"[{time.perf_counter() - self.started:7.1f} s] {text}")
        t0 = time.perf_counter()

        def done() -> None:
            self.seconds[name] = round(time.perf_counter() - t0, 3)

        return done


class Archives(NamedTuple):
    """The experiment's train/ and test/ archives and their site folders."""

    train: str
    test: str
    target: str  # the target site's folder (and ``site`` in the labels tables)
    sources: tuple[str, ...]  # each shift family's source site folder


def _site_folder(site: str) -> str:
    """The archive folder of a site given by name or YAML path (synth writes OUT/<name>/)."""
    from harmonize.synth import load_profile

    return load_profile(site).name


def _synthesize(
    config: ExperimentConfig, out_uri: str, store: Storage, steps: _Steps, progress: bool
) -> Archives:
    """The train/ and test/ archives (the target and every source site, labelled; the test
    split's source images also imaged at the target site, the paired truth the runs measure
    against)."""
    from harmonize.synth import synthesize_archive

    uris = {split: join(out_uri, "archive", split) for split in ("train", "test")}
    for split, seed, n in (
        ("train", config.seed, config.n_train),
        ("test", config.seed + 1, config.n_test),
    ):
        done = steps.start(
            f"synth_{split}", f"synthesizing the {split} archive: {n} images per site"
        )
        synthesize_archive(
            uris[split],
            [config.target_site, *config.source_sites],
            n,
            seed=seed,
            storage=store,
            matrix=config.matrix,
            progress=progress,
            lesion_strength=config.lesion_strength,
            prevalence=config.prevalence,
            truth_site=config.target_site if split == "test" else None,
        )
        done()
    sources = tuple(_site_folder(s) for s in config.source_sites)
    return Archives(uris["train"], uris["test"], _site_folder(config.target_site), sources)


def _split(config: ExperimentConfig, out_uri: str, store: Storage, steps: _Steps) -> Archives:
    """A user's two archives split into train/ and test/ by a hash of image_id."""
    from harmonize.experiments.split import split_archive

    done = steps.start("split", "splitting the archives by a hash of image_id")
    split = split_archive(config, join(out_uri, "archive"), store, steps.echo)
    steps.echo(f"    {split.line()}")
    done()
    return Archives(split.train, split.test, split.target, (split.source,))


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


def _execute(run: _Run, executor: Any, classifier_uri: str, store: Storage, options: RunOptions,
             steps: _Steps, key: str) -> None:  # fmt: skip
    done = steps.start(f"run_{key}", f"{run.what}: {key}")
    summary = run_harmonization(
        **run.arguments(), executor=executor, classifier_uri=classifier_uri, storage=store,
        options=options,
    )  # fmt: skip
    steps.echo(f"    {summary.line()}")
    done()


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
    options: RunOptions


def _family(
    config: ExperimentConfig,
    shared: _Shared,
    source: str,
    out_uri: str,
    executor: Any,
    store: Storage,
    steps: _Steps,
    progress: bool,
) -> FamilyResult:
    """One family: its site detector, every method fitted, the runs, the site AUCs and the
    report (its folders: OUT/models/SOURCE/, OUT/runs/SOURCE/ and OUT/report/SOURCE/)."""
    archives = shared.archives
    done = steps.start(
        f"site_detector_{source}", f"training the site detector: {source} or {archives.target}?"
    )
    detector_uri = join(out_uri, "models", source, "site-detector")
    detector_auc = train_site_detector(
        shared.settings, archives.train, archives.target, detector_uri, store, progress,
        sources=(source,),
    )  # fmt: skip
    steps.echo(f"    validation AUC {detector_auc:.3f}")
    done()

    models: dict[str, str] = {}
    for method in config.methods:
        models[method] = join(out_uri, "models", source, method)
        done = steps.start(f"fit_{source}_{method}", f"fitting {method} ({source} → target)")
        fit(
            config, method, join(archives.train, source), join(archives.train, archives.target),
            models[method], store, steps.echo, progress,
        )  # fmt: skip
        done()

    source_test = join(archives.test, source)
    runs = _family_runs(config, source_test, join(out_uri, "runs", source), models)
    # The target's own test images through every method too: the in-domain AUC, and what
    # each method does to images that already look right (it should change nothing).
    in_domain = _family_runs(
        config, join(archives.test, archives.target),
        join(out_uri, "runs", source, "in-domain"), models,
    )  # fmt: skip
    for run in [*runs, *in_domain]:
        key = run.out_uri.removeprefix(join(out_uri, "runs") + "/").replace("/", "_")
        _execute(run, executor, shared.classifier_uri, store, shared.options, steps, key)

    done = steps.start(f"site_aucs_{source}", "asking the site detector about every run's images")
    harmonized = {run.out_uri.rsplit("/", 1)[-1]: run.out_uri for run in runs}
    site = site_aucs(
        detector_uri, join(archives.test, archives.target), {"original": source_test},
        harmonized, store,
    )  # fmt: skip
    steps.echo("    " + ", ".join(f"{name} {auc:.3f}" for name, auc in site.items()))
    done()

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
) -> ExperimentResult:
    """Run the whole benchmark into ``out_uri`` (archive/, models/, runs/, report/ — one
    folder per family under the last three — and experiment.json); returns where everything
    went and each family's report. ``executors`` makes the runs' executor from
    ``config.executor`` (the command line passes the distributed stream's ``make_executor``)."""
    store = storage or Storage()
    steps = _Steps(echo)
    if config.user_archive:
        archives = _split(config, out_uri, store, steps)
    else:
        archives = _synthesize(config, out_uri, store, steps, progress)

    done = steps.start("classifier", f"training the classifier on {archives.target} (train split)")
    classifier_uri = join(out_uri, "models", "classifier")
    settings = classifier_settings(config, store)  # the site detectors train with them too
    classifier_auc = train_target_classifier(
        settings, archives.train, archives.target, classifier_uri, store, progress
    )
    echo(f"    validation AUC {classifier_auc:.3f}")
    done()

    executor = executors(config.executor)
    options = RunOptions(labels_uri=join(archives.test, "labels.parquet"), progress=progress)
    shared = _Shared(archives, settings, classifier_uri, options)
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
    }
    store.write_text(join(out_uri, RESULTS_FILE), json.dumps(record, indent=2) + "\n")
    return ExperimentResult(out_uri, families, steps.seconds)


def _recommendation(report: Report) -> dict[str, str | None] | None:
    """The method guide's choice on a family's own figures (``harmonize.report.guide``)."""
    choice = None if report.classifier is None else recommend(report.classifier, report.summaries)
    return None if choice is None else {"configuration": choice.label, "why": choice.sentence}
