"""The one method registry: every harmonization method by name, and how to make and load it.

The command line's choices (``train``, ``run --method``, ``experiment --method``, ``bench run``),
fitting, training, the experiment and the demo all derive from ``METHODS``; adding a method is
adding an entry here (see docs/architecture.md). Entries name their code through small loader
functions, so that reading the registry (``harmonize --help``) imports no torch.

Example::

    entry = method("cyclegan")            # ConfigError naming the choices for an unknown name
    entry.kind, entry.modes               # "neural", ("direct", "curve", "local")
    harmonizer = load_harmonizer("models/cyclegan", expected_method="cyclegan", mode="curve")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from harmonize.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from torch import nn

    from harmonize.io.storage import Storage
    from harmonize.methods.base import ClassicalHarmonizer, Harmonizer
    from harmonize.models.files import ModelFile

Kind = Literal["classical", "neural"]
CLASSICAL: Kind = "classical"
NEURAL: Kind = "neural"


class GanParts(NamedTuple):
    """What training and inference need of a GAN method."""

    recipe: Callable[..., Any]  # the recipe class: ``recipe(model_settings, *, steps, ...)``
    parse_config: Callable[[Mapping[str, Any]], object]  # the ``model:`` section -> its config
    build_generator: Callable[[Mapping[str, Any]], nn.Module]  # saved model config -> network


@dataclass(frozen=True)
class MethodEntry:
    """One method: its name, kind, one line of help, its output modes and its code, loaded on
    first use: a classical method's harmonizer class, or a GAN method's parts (its inference
    harmonizer is ``NeuralHarmonizer`` for every GAN)."""

    name: str
    kind: Kind
    summary: str
    classical: Callable[[], type[ClassicalHarmonizer]] | None = None
    gan: Callable[[], GanParts] | None = None

    @property
    def modes(self) -> tuple[str, ...]:
        """How ``harmonize run --mode`` may apply it (neural: the generator, one curve, or
        local curves and band gains)."""
        return ("direct", "curve", "local") if self.kind == NEURAL else ("direct",)

    @property
    def default_mode(self) -> str:
        """The mode a run takes when none is asked for: the method guide's safe default
        (docs/results.md) for a neural method, ``curve``; a classical method's only mode."""
        return "curve" if self.kind == NEURAL else "direct"


# -- the loaders (imports happen here, on first use) -----------------------------------------------
def _histogram() -> type[ClassicalHarmonizer]:
    from harmonize.methods.histogram import HistogramMatching

    return HistogramMatching


def _nyul() -> type[ClassicalHarmonizer]:
    from harmonize.methods.nyul import NyulStandardization

    return NyulStandardization


def _multiscale() -> type[ClassicalHarmonizer]:
    from harmonize.methods.multiscale import MultiScaleMatching

    return MultiScaleMatching


def _cyclegan() -> GanParts:
    from harmonize.gan.cyclegan.config import CycleGANConfig
    from harmonize.gan.cyclegan.networks import build_generator
    from harmonize.gan.cyclegan.recipe import CycleGANRecipe

    return GanParts(CycleGANRecipe, CycleGANConfig.from_dict, build_generator)


def _unit() -> GanParts:
    from harmonize.gan.unit.config import UNITConfig
    from harmonize.gan.unit.networks import build_generator
    from harmonize.gan.unit.recipe import UNITRecipe

    return GanParts(UNITRecipe, UNITConfig.from_dict, build_generator)


def _cut() -> GanParts:
    from harmonize.gan.cut.config import CUTConfig
    from harmonize.gan.cut.networks import build_generator
    from harmonize.gan.cut.recipe import CUTRecipe

    return GanParts(CUTRecipe, CUTConfig.from_dict, build_generator)


METHODS: dict[str, MethodEntry] = {
    entry.name: entry
    for entry in (
        MethodEntry(
            "histogram",
            CLASSICAL,
            "Fit histogram matching to a target-site reference.",
            classical=_histogram,
        ),
        MethodEntry(
            "nyul",
            CLASSICAL,
            "Fit Nyúl piecewise-linear standardization to the target site.",
            classical=_nyul,
        ),
        MethodEntry(
            "multiscale",
            CLASSICAL,
            "Fit multi-scale matching (detail-band energies, then histogram) to the target site.",
            classical=_multiscale,
        ),
        MethodEntry(
            "cyclegan",
            NEURAL,
            "Train CycleGAN (source -> target) with Ray Train.",
            gan=_cyclegan,
        ),
        MethodEntry(
            "unit",
            NEURAL,
            "Train UNIT (shared-latent VAE-GAN) with Ray Train.",
            gan=_unit,
        ),
        MethodEntry(
            "cut",
            NEURAL,
            "Train CUT (one-sided contrastive translation) with Ray Train.",
            gan=_cut,
        ),
    )
}


def method_names(kind: Kind | None = None) -> list[str]:
    """The registered methods (of one ``kind``), in registry order."""
    return [name for name, entry in METHODS.items() if kind is None or entry.kind == kind]


def method(name: str, kind: Kind | None = None) -> MethodEntry:
    """The entry of ``name``; ConfigError naming the choices when there is none (of ``kind``)."""
    entry = METHODS.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        what = f"{kind} method" if kind else "method"
        raise ConfigError(f'unknown {what} "{name}"; choose one of {method_names(kind)}')
    return entry


def gan_parts(name: str) -> GanParts:
    """The recipe, config parser and generator builder of the GAN method ``name``."""
    entry = method(name, NEURAL)
    assert entry.gan is not None
    return entry.gan()


def create_harmonizer(name: str, config: Any = None) -> ClassicalHarmonizer:
    """A new, unfitted classical harmonizer of ``name``, configured by its config dataclass or
    a plain mapping (a YAML file's settings; unknown keys are refused).

    Raises:
        ConfigError: an unknown method, a neural one (those are trained), or a bad config.
    """
    from harmonize.validate import from_mapping

    entry = method(name)
    if entry.classical is None:
        raise ConfigError(
            f"{name} is trained, not fitted: `harmonize train {name} --source URI "
            "--target URI --out URI`"
        )
    cls = entry.classical()
    return cls(from_mapping(cls.config_class, config, name))


@dataclass(frozen=True)
class LoadedModel:
    """A harmonizer read back from a model URI, with what identifies it in a manifest."""

    uri: str
    harmonizer: Harmonizer
    model_hash: str
    card: dict[str, Any]


def harmonizer_from_file(model: ModelFile) -> Harmonizer:
    """The harmonizer of a model file read by ``read_model``.

    Raises:
        ModelError: the file holds a method this version does not know, a malformed state, or
            weights that do not fit their config.
    """
    from harmonize.models.files import load_weights

    entry = METHODS.get(model.method)
    if entry is None:
        raise ModelError(
            f'"{model.uri}" holds method "{model.method}", unknown here; known: {method_names()}'
        )
    if entry.classical is not None:
        return entry.classical().from_state(model.state)
    from harmonize.methods.neural import NeuralHarmonizer

    generator = load_weights(gan_parts(entry.name).build_generator(model.model_config), model)
    return NeuralHarmonizer(entry.name, model.model_config, generator)


def load_model(
    uri: str,
    storage: Storage | None = None,
    expected_method: str | None = None,
    mode: str = "direct",
) -> LoadedModel:
    """Load the harmonizer saved under ``uri`` (a folder or s3:// prefix holding
    harmonizer.json), ready to apply in ``mode``.

    Raises:
        ModelError: nothing usable is there, or it holds another method than ``expected_method``.
        ConfigError: the method has no such mode.
    """
    from harmonize.metrics.histogram import HIST_BINS
    from harmonize.models.cards import card_target_histogram
    from harmonize.models.files import read_model

    model = read_model(uri, storage, expected_method=expected_method)
    harmonizer = harmonizer_from_file(model)
    harmonizer.set_mode(mode)
    harmonizer.target_histogram = card_target_histogram(model.card, HIST_BINS)
    return LoadedModel(uri, harmonizer, model.model_hash, model.card)
