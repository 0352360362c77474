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
        source_sites: the source sites, built-in profile names (or YAML paths): one shift
            family each, every family against the same target site (one table each).
        target_site: the target site's profile name (or YAML path).
        source_uri, target_uri, labels_uri: a user's own two-site data instead of synthetic
            sites: the two archives (folders or s3:// prefixes of DICOM) and a labels table of
            their images (image_id = SOPInstanceUID, label); split by a hash of image_id
            (``harmonize.experiments.split``). The sizes, seed and findings then do not apply.
        truth_uri: where the source images' truth images lie (see ``split_archive``).
        test_fraction: the share of a user's images that the hash sends to the test split.
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
    source_sites: tuple[str, ...] = ("mc-like",)
    target_site: str = "shenzhen-like"
    source_uri: str | None = None
    target_uri: str | None = None
    labels_uri: str | None = None
    truth_uri: str | None = None
    test_fraction: float = 0.4
    methods: tuple[str, ...] = tuple(method_names())
    modes: tuple[str, ...] = ("curve", "local", "direct")
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
        check_text("experiment", "target_site", self.target_site)
        sources = tuple(dict.fromkeys(str(s) for s in self.source_sites))
        if not sources:
            raise ConfigError("experiment source_sites must name at least one site profile")
        for source in sources:
            check_text("experiment", "source_sites", source)
        if self.target_site in sources:
            raise ConfigError(
                f'experiment source_sites must not name the target site "{self.target_site}"'
            )
        set_field(self, "source_sites", sources)
        self._check_user_archive()
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

    def _check_user_archive(self) -> None:
        uris = {n: getattr(self, n) for n in ("source_uri", "target_uri", "labels_uri")}
        given = [n for n, v in uris.items() if v is not None]
        if given and len(given) < len(uris):
            missing = ", ".join(n for n in uris if n not in given)
            raise ConfigError(
                f"experiment on a user's archive needs source_uri, target_uri and labels_uri; "
                f"{missing} missing"
            )
        for name in [*given, *(["truth_uri"] if self.truth_uri is not None else [])]:
            check_text("experiment", name, getattr(self, name))
        if self.truth_uri is not None and not given:
            raise ConfigError("experiment truth_uri needs source_uri, target_uri and labels_uri")
        check_number("experiment", "test_fraction", self.test_fraction, low=0.05, high=0.95)

    @property
    def user_archive(self) -> bool:
        """Whether the experiment runs on a user's data (``source_uri`` ...), not synthetic."""
        return self.source_uri is not None

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
