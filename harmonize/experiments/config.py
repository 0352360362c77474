"""What one benchmark experiment is: its sizes, sites, methods, modes and training configs,
checked once (``ExperimentConfig``), and the minute-sized ``--quick`` variant.

Methods and modes derive from the method registry; the training configs default to the
packaged CPU-sized ones (``harmonize.experiments.packaged``). This module stays light: the
command line reads its defaults for ``harmonize experiment --help``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from harmonize.errors import ConfigError
from harmonize.experiments.packaged import config_path, cpu_quick_name, resolve_config
from harmonize.models.registry import METHODS, NEURAL, method_names
from harmonize.validate import check_choice, check_int, check_number, check_text, set_field

EXECUTORS = ("ray", "local")  # what runs the harmonization runs (``make_executor``'s names)
DEFAULT_LESION_STRENGTH = 2.5  # findings a 128-px classifier can learn (see docs/results.md)
#: What ``ExperimentConfig.quick`` changes: tiny data and training, one mode.
QUICK: dict[str, Any] = {
    "n_train": 16,
    "n_test": 16,
    "matrix": 128,
    "modes": ("curve",),
    "gan_steps": 4,
    "classifier_steps": 10,
}


def neural_modes() -> tuple[str, ...]:
    """The output modes of the registry's neural methods, in registry order."""
    return tuple(dict.fromkeys(m for n in method_names(NEURAL) for m in METHODS[n].modes))


@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes and training lengths of one benchmark experiment.

    Args:
        n_train: training images per site (classifier: the target site's; methods: both).
        n_test: test images per site (scored; never trained on).
        matrix: image side in pixels (the profiles' own sizes are 2048-2560).
        seed: the training archive's seed; the test archive uses ``seed + 1``.
        source_site, target_site: built-in profile names (or YAML paths).
        methods: registered methods to compare.
        modes: output modes of the neural methods (``curve`` and/or ``direct``).
        gan_configs: (method, YAML) pairs: the training config of a neural method, a path, an
            s3:// URI or a packaged config's name (default: the packaged
            ``<method>-cpu-quick``); ``gan_steps`` overrides its steps.
        gan_steps: GAN training steps (None: the config's).
        classifier_config: the classifier's training config, like ``gan_configs``' (default:
            the packaged ``classifier-cpu-quick``).
        classifier_steps: classifier training steps (None: the config's).
        executor: ``ray`` (local Ray Data) or ``local`` for the runs (``run_experiment``'s
            ``executors`` turns the name into the executor).
        lesion_strength, prevalence: the synthetic findings (see ``synthesize_archive``); 2.5
            makes the findings large enough for a classifier on 128-px images.

    Raises:
        ConfigError: a field is invalid (the message names it and what it must be).
    """

    n_train: int = 200
    n_test: int = 200
    matrix: int = 512
    seed: int = 0
    source_site: str = "mc-like"
    target_site: str = "shenzhen-like"
    methods: tuple[str, ...] = tuple(method_names())
    modes: tuple[str, ...] = ("curve", "direct")
    gan_configs: tuple[tuple[str, str], ...] = ()
    gan_steps: int | None = None
    classifier_config: str | None = None
    classifier_steps: int | None = None
    executor: str = "ray"
    lesion_strength: float = DEFAULT_LESION_STRENGTH
    prevalence: float = 0.5

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test"):  # both classes in every split
            check_int("experiment", name, getattr(self, name), low=4)
        check_int("experiment", "matrix", self.matrix, low=64, high=8192)
        check_int("experiment", "seed", self.seed)
        for name in ("source_site", "target_site"):
            check_text("experiment", name, getattr(self, name))
        if self.source_site == self.target_site:
            raise ConfigError("experiment source_site and target_site must differ")
        for name, choices in (("methods", method_names()), ("modes", neural_modes())):
            values = tuple(getattr(self, name))
            if not values:
                raise ConfigError(f"experiment {name} must name at least one of {choices}")
            for value in values:
                check_choice("experiment", name, value, choices)
            set_field(self, name, values)
        pairs = tuple((str(method), str(path)) for method, path in self.gan_configs)
        for method, path in pairs:
            check_choice("experiment", "gan_configs method", method, method_names(NEURAL))
            check_text("experiment", f"gan_configs {method}", path)
        set_field(self, "gan_configs", pairs)
        for name in ("gan_steps", "classifier_steps"):
            if getattr(self, name) is not None:
                check_int("experiment", name, getattr(self, name), low=1)
        if self.classifier_config is not None:
            check_text("experiment", "classifier_config", self.classifier_config)
        check_choice("experiment", "executor", self.executor, EXECUTORS)
        check_number("experiment", "lesion_strength", self.lesion_strength, low=0)
        check_number("experiment", "prevalence", self.prevalence, low=0, high=1)

    def gan_config(self, method: str) -> str:
        """The training config of ``method``: its path or URI (a packaged name resolved)."""
        given = dict(self.gan_configs).get(method)
        return resolve_config(given) if given else config_path(cpu_quick_name(method))

    def classifier_config_path(self) -> str:
        """The classifier's training config: its path or URI (a packaged name resolved)."""
        given = self.classifier_config
        return resolve_config(given) if given else config_path(cpu_quick_name("classifier"))

    @classmethod
    def quick(cls, **overrides: Any) -> ExperimentConfig:
        """A minute-sized run for CI: every step and every section, tiny data and training."""
        return cls(**{**QUICK, **overrides})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default (``harmonize experiment --help`` shows them)."""
        return {f.name: f.default for f in fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
