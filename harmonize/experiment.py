"""`harmonize experiment`: the paper's benchmark end to end on a synthetic two-site archive.

    synth train/ and test/ archives (source + target site, labelled)
      → train the classifier on the target site's training images only
      → fit / train every method on unpaired training images (source → target)
      → run the source site's test images through each method, with the classifier
        (and the target site's test images once, for the in-domain AUC)
      → one report over all those manifests (Tables 1 and 2, ROC, histograms)

Each step is the same function the CLI calls (``synthesize_archive``, ``train_classifier``,
``fit_classical``, ``training.train``, ``run_harmonization``, ``build_report``), here in one
process with local Ray for the runs. The training and test archives use different seeds, so the
images scored are never the ones any model learnt from.

Example::

    result = run_experiment(ExperimentConfig.quick(), "out/experiment", executors=make_executor)
    print(result.report.markdown)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harmonize.errors import ConfigError
from harmonize.io.storage import Storage, join
from harmonize.models.registry import METHODS
from harmonize.report import Report, build_report
from harmonize.run.orchestrate import ExecutorFactory, run_harmonization
from harmonize.run.spec import RunOptions

NEURAL_METHODS = ("cyclegan", "unit")
CLASSICAL_METHODS = ("histogram", "nyul")
RESULTS_FILE = "experiment.json"
CONFIGS = Path(__file__).resolve().parent.parent / "jobs" / "configs"
DEFAULT_LESION_STRENGTH = 2.5  # findings a 128-px classifier can learn (see docs/results.md)


def default_config(name: str) -> str:
    """``jobs/configs/<name>-cpu-quick.yaml`` of this checkout (the CPU-sized configs)."""
    return str(CONFIGS / f"{name}-cpu-quick.yaml")


@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes and training lengths of one benchmark experiment.

    Args:
        n_train: training images per site (classifier: the target site's; methods: both).
        n_test: test images per site (scored; never trained on).
        matrix: image side in pixels (the profiles' own sizes are 2048-2560).
        seed: the training archive's seed; the test archive uses ``seed + 1``.
        source_site, target_site: built-in profile names (or YAML paths).
        methods: methods to compare (those not available in this version are skipped, named).
        modes: output modes of the neural methods (``curve`` and/or ``direct``).
        gan_configs: (method, YAML) pairs: the training config of CycleGAN / UNIT (default:
            ``jobs/configs/<method>-cpu-quick.yaml``); ``gan_steps`` overrides its steps.
        gan_steps: GAN training steps (None: the config's).
        classifier_config: the classifier's training config (YAML; default:
            ``jobs/configs/classifier-cpu-quick.yaml``).
        classifier_steps: classifier training steps (None: the config's).
        executor: ``ray`` (local Ray Data) or ``local`` for the runs (``run_experiment``'s
            ``executors`` turns the name into the executor).
        lesion_strength, prevalence: the synthetic findings (see ``synthesize_archive``); 2.5
            makes the findings large enough for a classifier on 128-px images.
    """

    n_train: int = 200
    n_test: int = 200
    matrix: int = 512
    seed: int = 0
    source_site: str = "mc-like"
    target_site: str = "shenzhen-like"
    methods: tuple[str, ...] = ("histogram", "nyul", "cyclegan", "unit")
    modes: tuple[str, ...] = ("curve", "direct")
    gan_configs: tuple[tuple[str, str], ...] = ()
    gan_steps: int | None = None
    classifier_config: str | None = None
    classifier_steps: int | None = None
    executor: str = "ray"
    lesion_strength: float = DEFAULT_LESION_STRENGTH
    prevalence: float = 0.5

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 4:
                raise ConfigError(f"{name} must be an integer >= 4 (both classes), got {value!r}")
        unknown = sorted(set(self.methods) - set(CLASSICAL_METHODS) - set(NEURAL_METHODS))
        if unknown:
            raise ConfigError(
                f"unknown methods {unknown}; choose from {[*CLASSICAL_METHODS, *NEURAL_METHODS]}"
            )
        bad_modes = sorted(set(self.modes) - {"curve", "direct"})
        if bad_modes or not self.modes:
            raise ConfigError(f"modes must be curve and/or direct, got {list(self.modes)}")
        if self.source_site == self.target_site:
            raise ConfigError("source_site and target_site must differ")
        for method, _ in self.gan_configs:
            if method not in NEURAL_METHODS:
                raise ConfigError(f'a GAN config names "{method}"; GAN methods: {NEURAL_METHODS}')

    def gan_config(self, method: str) -> str:
        return dict(self.gan_configs).get(method) or default_config(method)

    @classmethod
    def quick(cls, **overrides: Any) -> ExperimentConfig:
        """A minute-sized run for CI: every step and every section, tiny data and training."""
        values: dict[str, Any] = {
            "n_train": 16,
            "n_test": 16,
            "matrix": 128,
            "modes": ("curve",),
            "gan_steps": 4,
            "classifier_steps": 10,
            **overrides,
        }
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExperimentResult:
    out_uri: str
    report: Report
    run_uris: tuple[str, ...]
    skipped_methods: dict[str, str]
    seconds: dict[str, float]


def available(methods: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(methods this version can run, {method: why not} for the rest)."""
    ok = [m for m in methods if m in METHODS]
    return ok, {m: "not available in this version" for m in methods if m not in METHODS}


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
    from harmonize.classifier.config import load_classifier_config
    from harmonize.classifier.data import prepare_classifier_data
    from harmonize.classifier.training import train_classifier
    from harmonize.methods.fit import fit_classical
    from harmonize.synth import synthesize_archive
    from harmonize.training.config import load_train_config
    from harmonize.training.data import prepare_training_data
    from harmonize.training.gan import train

    store = storage or Storage()
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    methods, skipped = available(config.methods)
    for method, why in skipped.items():
        echo(f"skipping {method}: {why}")

    def step(name: str, text: str) -> Callable[[], None]:
        echo(f"[{time.perf_counter() - started:7.1f} s] {text}")
        t0 = time.perf_counter()

        def done() -> None:
            seconds[name] = round(time.perf_counter() - t0, 3)

        return done

    sites = [config.target_site, config.source_site]
    archives = {split: join(out_uri, "archive", split) for split in ("train", "test")}
    for split, seed, n in (
        ("train", config.seed, config.n_train),
        ("test", config.seed + 1, config.n_test),
    ):
        done = step(f"synth_{split}", f"synthesizing the {split} archive: {n} images per site")
        synthesize_archive(
            archives[split],
            sites,
            n,
            seed=seed,
            storage=store,
            matrix=config.matrix,
            progress=progress,
            lesion_strength=config.lesion_strength,
            prevalence=config.prevalence,
        )
        done()
    source_train = join(archives["train"], _site_folder(config.source_site))
    target_train = join(archives["train"], _site_folder(config.target_site))

    done = step("classifier", f"training the classifier on {config.target_site} (train split)")
    classifier_uri = join(out_uri, "models", "classifier")
    clf_config = load_classifier_config(
        config.classifier_config or default_config("classifier"),
        store,
        steps=config.classifier_steps,
    )
    clf_data = prepare_classifier_data(
        target_train,
        join(archives["train"], "labels.parquet"),
        clf_config.input_size,
        storage=store,
        progress=progress,
    )
    clf_result = train_classifier(
        clf_config, clf_data, classifier_uri, storage=store, resume=False, progress=progress
    )
    classifier_auc = float((clf_result.validation or {})["auc"])
    echo(f"    validation AUC {classifier_auc:.3f}")
    done()

    models: dict[str, str] = {}
    for method in methods:
        model_uri = join(out_uri, "models", method)
        done = step(f"fit_{method}", f"fitting {method} ({config.source_site} → target)")
        if method in CLASSICAL_METHODS:
            fit_classical(method, target_train, model_uri, storage=store, progress=progress)
        else:
            gan_config = load_train_config(
                config.gan_config(method), store, method=method, steps=config.gan_steps
            )
            data = prepare_training_data(
                source_train, target_train, gan_config.load_size, storage=store, progress=progress
            )
            result = train(
                gan_config, data, model_uri, storage=store, resume=False, progress=progress
            )
            if result.validation:
                echo(
                    f"    validation SSIM {result.validation['ssim_mean']:.3f}, W1 to target "
                    f"{result.validation['w1_to_target_before']:.3f} → "
                    f"{result.validation['w1_to_target_after']:.3f}"
                )
        models[method] = model_uri
        done()

    labels = join(archives["test"], "labels.parquet")
    executor = executors(config.executor)
    options = RunOptions(labels_uri=labels, progress=progress)
    source_test = join(archives["test"], _site_folder(config.source_site))
    # (run name, input, method, mode, what the step says): the source's test images through
    # every method and mode, then the target's once through any method (the report reads
    # their score_in as the in-domain AUC)
    jobs = [
        (
            method if method in CLASSICAL_METHODS else f"{method}-{mode}",
            source_test,
            method,
            mode,
            f"harmonizing the {config.source_site} test images",
        )
        for method in methods
        for mode in (config.modes if method in NEURAL_METHODS else ("direct",))
    ]
    if models:
        target_test = join(archives["test"], _site_folder(config.target_site))
        what = f"scoring the {config.target_site} test images (in-domain)"
        jobs.append(("in-domain", target_test, next(iter(models)), "direct", what))
    runs: list[str] = []
    for name, input_uri, method, mode, what in jobs:
        run_uri = join(out_uri, "runs", name)
        done = step(f"run_{name}", f"{what}: {name}")
        summary = run_harmonization(
            input_uri=input_uri,
            out_uri=run_uri,
            method=method,
            model_uri=models[method],
            executor=executor,
            mode=mode,
            classifier_uri=classifier_uri,
            storage=store,
            options=options,
        )
        echo(f"    {summary.line()}")
        runs.append(run_uri)
        done()

    done = step("report", "writing the report")
    report = build_report(
        runs, join(out_uri, "report"), storage=store, target_site=config.target_site
    )
    done()
    seconds["total"] = round(time.perf_counter() - started, 3)
    record = {
        "config": config.to_dict(),
        "classifier_validation_auc": classifier_auc,
        "models": models,
        "runs": runs,
        "skipped_methods": skipped,
        "seconds": seconds,
        "report": report.html_path,
    }
    store.write_text(join(out_uri, RESULTS_FILE), json.dumps(record, indent=2) + "\n")
    return ExperimentResult(out_uri, report, tuple(runs), skipped, seconds)


def _site_folder(site: str) -> str:
    """The archive folder of a site given by name or YAML path (synth writes OUT/<name>/)."""
    from harmonize.synth import load_profile

    return load_profile(site).name
