"""`harmonize experiment`: the paper's benchmark end to end on a synthetic two-site archive.

    synth train/ and test/ archives (source + target site, labelled; the test split with the
      source images' paired truth: the same patients imaged at the target site)
      → train the classifier on the target site's training images only, and a site detector
        on both sites' (which site is this image from?)
      → fit / train every method on unpaired training images (source → target)
      → run the source site's test images through each method, with the classifier
        (and the target site's test images once, for the in-domain AUC)
      → the site detector's AUC on the test originals and on each method's harmonized images
      → one report over all those manifests (Tables 1, 2 and 3, ROC, histograms)

Each step is the same function the CLI calls (``synthesize_archive``, ``train_classifier``,
``fit_classical``, ``training.gan.train``, ``run_harmonization``, ``build_report``), here in one
process with the executor it is given for the runs. The training and test archives use
different seeds, so the images scored are never the ones any model learnt from.

Example::

    result = run_experiment(ExperimentConfig.quick(), "out/experiment", executors=make_executor)
    print(result.report.markdown)
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
from harmonize.io.storage import Storage, join
from harmonize.models.registry import CLASSICAL, METHODS, NEURAL
from harmonize.report import Report, build_report
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


def _site_folder(site: str) -> str:
    """The archive folder of a site given by name or YAML path (synth writes OUT/<name>/)."""
    from harmonize.synth import load_profile

    return load_profile(site).name


def _synthesize(
    config: ExperimentConfig, out_uri: str, store: Storage, steps: _Steps, progress: bool
) -> dict[str, str]:
    """The train/ and test/ archives (both sites, labelled; the test split's source images
    also imaged at the target site, the paired truth the runs measure against); returns their
    URIs by split."""
    from harmonize.synth import synthesize_archive

    archives = {split: join(out_uri, "archive", split) for split in ("train", "test")}
    for split, seed, n in (
        ("train", config.seed, config.n_train),
        ("test", config.seed + 1, config.n_test),
    ):
        done = steps.start(
            f"synth_{split}", f"synthesizing the {split} archive: {n} images per site"
        )
        synthesize_archive(
            archives[split],
            [config.target_site, config.source_site],
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
    return archives


def _classifier_settings(config: ExperimentConfig, store: Storage) -> ClassifierConfig:
    """The classifier's training settings; the site detector trains with the same ones."""
    from harmonize.classifier.config import load_classifier_config

    return load_classifier_config(
        config.classifier_config_path(), store, steps=config.classifier_steps
    )


def _train_classifier(
    config: ExperimentConfig,
    settings: ClassifierConfig,
    train_archive: str,
    model_uri: str,
    store: Storage,
    progress: bool,
) -> float:
    """Train the classifier on the target site's training images; its validation AUC."""
    from harmonize.classifier.data import prepare_classifier_data
    from harmonize.classifier.training import train_classifier

    data = prepare_classifier_data(
        join(train_archive, _site_folder(config.target_site)),
        join(train_archive, "labels.parquet"),
        settings.input_size,
        storage=store,
        progress=progress,
    )
    result = train_classifier(
        settings, data, model_uri, storage=store, resume=False, progress=progress
    )
    return float((result.validation or {})["auc"])


def _fit(
    config: ExperimentConfig,
    method: str,
    train_archive: str,
    model_uri: str,
    store: Storage,
    echo: Echo,
    progress: bool,
) -> None:
    """Fit a classical method on the target site's training images, or train a neural one on
    both sites'."""
    from harmonize.methods.fit import fit_classical
    from harmonize.training.config import load_train_config
    from harmonize.training.data import prepare_training_data
    from harmonize.training.gan import train

    source = join(train_archive, _site_folder(config.source_site))
    target = join(train_archive, _site_folder(config.target_site))
    if METHODS[method].kind == CLASSICAL:
        fit_classical(method, target, model_uri, storage=store, progress=progress)
        return
    gan_config = load_train_config(
        config.gan_config(method), store, method=method, steps=config.gan_steps
    )
    data = prepare_training_data(
        source, target, gan_config.load_size, storage=store, progress=progress
    )
    result = train(gan_config, data, model_uri, storage=store, resume=False, progress=progress)
    if result.validation:
        echo(
            f"    validation SSIM {result.validation['ssim_mean']:.3f}, W1 to target "
            f"{result.validation['w1_to_target_before']:.3f} → "
            f"{result.validation['w1_to_target_after']:.3f}"
        )


class _Run(NamedTuple):
    name: str  # the folder under OUT/runs/
    input_uri: str
    method: str
    mode: str
    what: str  # what the step says


def _runs(config: ExperimentConfig, test_archive: str, models: dict[str, str]) -> list[_Run]:
    """Every run: the source's test images through every method and mode, then the target's
    once through any method (the report reads their score_in as the in-domain AUC)."""
    source_test = join(test_archive, _site_folder(config.source_site))
    what = f"harmonizing the {config.source_site} test images"
    runs = []
    for method in models:
        if METHODS[method].kind == NEURAL:
            runs += [_Run(f"{method}-{m}", source_test, method, m, what) for m in config.modes]
        else:
            runs.append(_Run(method, source_test, method, "direct", what))
    if models:
        target_test = join(test_archive, _site_folder(config.target_site))
        in_domain = f"scoring the {config.target_site} test images (in-domain)"
        runs.append(_Run("in-domain", target_test, next(iter(models)), "direct", in_domain))
    return runs


@dataclass(frozen=True)
class ExperimentResult:
    """Where an experiment wrote its results, its report and the seconds of each step."""

    out_uri: str
    report: Report
    run_uris: tuple[str, ...]
    seconds: dict[str, float]


def run_experiment(
    config: ExperimentConfig,
    out_uri: str,
    *,
    executors: ExecutorFactory,
    storage: Storage | None = None,
    echo: Callable[[str], Any] = print,
    progress: bool = False,
) -> ExperimentResult:
    """Run the whole benchmark into ``out_uri`` (archive/, models/, runs/, report/,
    experiment.json); returns where everything went and the report. ``executors`` makes the
    runs' executor from ``config.executor`` (the command line passes the distributed stream's
    ``make_executor``)."""
    store = storage or Storage()
    steps = _Steps(echo)
    archives = _synthesize(config, out_uri, store, steps, progress)

    done = steps.start(
        "classifier", f"training the classifier on {config.target_site} (train split)"
    )
    classifier_uri = join(out_uri, "models", "classifier")
    settings = _classifier_settings(config, store)  # the site detector trains with them too
    classifier_auc = _train_classifier(
        config, settings, archives["train"], classifier_uri, store, progress
    )
    echo(f"    validation AUC {classifier_auc:.3f}")
    done()

    done = steps.start("site_detector", "training the site detector on both sites (train split)")
    detector_uri = join(out_uri, "models", "site-detector")
    target_name = _site_folder(config.target_site)
    detector_auc = train_site_detector(
        settings, archives["train"], target_name, detector_uri, store, progress
    )
    echo(f"    validation AUC {detector_auc:.3f}")
    done()

    models: dict[str, str] = {}
    for method in config.methods:
        models[method] = join(out_uri, "models", method)
        done = steps.start(f"fit_{method}", f"fitting {method} ({config.source_site} → target)")
        _fit(config, method, archives["train"], models[method], store, echo, progress)
        done()

    executor = executors(config.executor)
    options = RunOptions(labels_uri=join(archives["test"], "labels.parquet"), progress=progress)
    runs: list[str] = []
    planned = _runs(config, archives["test"], models)
    for run in planned:
        runs.append(join(out_uri, "runs", run.name))
        done = steps.start(f"run_{run.name}", f"{run.what}: {run.name}")
        summary = run_harmonization(
            input_uri=run.input_uri,
            out_uri=runs[-1],
            method=run.method,
            model_uri=models[run.method],
            executor=executor,
            mode=run.mode,
            classifier_uri=classifier_uri,
            storage=store,
            options=options,
        )
        echo(f"    {summary.line()}")
        done()

    done = steps.start("site_aucs", "asking the site detector about every run's images")
    source_test = join(archives["test"], _site_folder(config.source_site))
    harmonized = {  # the source's images through each method (not the in-domain run)
        run.name: uri
        for run, uri in zip(planned, runs, strict=True)
        if run.input_uri == source_test
    }
    site = site_aucs(
        detector_uri,
        join(archives["test"], target_name),
        {"original": source_test},
        harmonized,
        store,
    )
    echo("    " + ", ".join(f"{name} {auc:.3f}" for name, auc in site.items()))
    done()

    done = steps.start("report", "writing the report")
    report = build_report(
        runs,
        join(out_uri, "report"),
        storage=store,
        target_site=config.target_site,
        extra_sections=(site_section(site, detector_auc, target_name),),
    )
    done()
    steps.seconds["total"] = round(time.perf_counter() - steps.started, 3)
    record = {
        "config": config.to_dict(),
        "classifier_validation_auc": classifier_auc,
        "site_detector": {"validation_auc": detector_auc, "auc": site},
        "models": models,
        "runs": runs,
        "seconds": steps.seconds,
        "report": report.html_path,
    }
    store.write_text(join(out_uri, RESULTS_FILE), json.dumps(record, indent=2) + "\n")
    return ExperimentResult(out_uri, report, tuple(runs), steps.seconds)
