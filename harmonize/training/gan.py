"""Training a GAN harmonizer: ``GanTask`` (any recipe of the method registry through the one loop)
and ``train``.

The task samples unpaired crops from ``TrainingData``, steps the recipe (``train_step``), saves
the recipe's whole state in every checkpoint, and at the end saves the source->target generator
with a model card through ``models.files.write_network``; the card's validation runs the saved
generator through ``NeuralHarmonizer`` in every mode ``harmonize run`` applies.

Example::

    config = load_train_config("train.yaml", steps=2000)
    data = prepare_training_data("s3://pacs/montgomery", "s3://pacs/shenzhen", config.load_size)
    result = train(config, data, "s3://models/cyclegan-mc-to-sz")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, Unpack

import numpy as np
import torch
from torch import nn

from harmonize.errors import ConfigError
from harmonize.io.storage import Storage
from harmonize.methods.neural import NeuralHarmonizer
from harmonize.models.cards import intended_use
from harmonize.models.files import write_network
from harmonize.models.registry import gan_parts
from harmonize.training.checkpoint import check_resumable
from harmonize.training.config import TrainConfig
from harmonize.training.data import TrainingData
from harmonize.training.loop import LoopOptions, run_training
from harmonize.training.task import TrainResult
from harmonize.training.validate import site_histogram, validate_generator

#: What a resumed run must share with the checkpoint it continues.
RESUME_KEYS = ("method", "model", "batch_size", "crop_size")


class GanRecipe(Protocol):
    """What the task needs from a GAN method (``CycleGANRecipe``, ``UNITRecipe``, ``CUTRecipe``)."""

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
    def rank_state(self) -> dict[str, Any]: ...
    def load_rank_state(self, state: Mapping[str, Any]) -> None: ...
    def generator_state(self) -> dict[str, torch.Tensor]: ...
    def model_config(self) -> dict[str, Any]: ...
    @property
    def learning_rate(self) -> float: ...


class GanTask:
    """``config.method``'s recipe on ``data``, for ``run_training``.

    Raises:
        ConfigError: the data was prepared at another load size than the config's.
    """

    progress_keys = ("g_total", "d_b")
    recipe: GanRecipe  # built by ``setup``

    def __init__(self, config: TrainConfig, data: TrainingData) -> None:
        if data.load_size != config.load_size:
            raise ConfigError(
                f"the training data was prepared at load_size {data.load_size}, the config asks "
                f"for {config.load_size}; prepare it again or set load_size: {data.load_size}"
            )
        self.config, self.data = config, data
        self.device = torch.device("cpu")

    @property
    def name(self) -> str:
        return self.config.method

    def setup(
        self, device: torch.device, rank: int, wrap: Callable[[nn.Module], nn.Module] | None
    ) -> dict[str, Any]:
        config, resolved = self.config, self.config.resolved(device)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if config.cuda_graphs and distributed and torch.distributed.get_world_size() > 1:
            raise ConfigError(
                "cuda_graphs replays each network on one GPU and does not combine with "
                "DistributedDataParallel; train on one GPU or set cuda_graphs: false"
            )
        # Fixed crop sizes: let cuDNN pick each convolution's fastest algorithm once.
        if resolved["cudnn_benchmark"]:
            torch.backends.cudnn.benchmark = True
        self.device = device
        self.recipe = gan_parts(config.method).recipe(
            config.model,
            steps=config.steps,
            decay_start=config.decay_start_step,
            device=device,
            seed=config.seed,
            rank=rank,
            wrap=wrap,
            precision=resolved["precision"],
            channels_last=resolved["channels_last"],
            compile=resolved["compile"],
            cuda_graphs=config.cuda_graphs,
            fused_optimizer=resolved["fused_optimizer"],
        )
        return resolved

    def train_step(self, step: int, sampler: np.random.Generator) -> dict[str, float]:
        config = self.config
        real_a, real_b = self.data.sample(sampler, config.batch_size, config.crop_size, config.flip)
        return self.recipe.train_step(real_a, real_b)

    @property
    def learning_rate(self) -> float:
        return self.recipe.learning_rate

    def evaluation_due(self, step: int) -> bool:
        return False  # the card's validation runs once, in ``finish``

    def evaluate(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe.state_dict()}

    def load_state_dict(self, checkpoint: Mapping[str, Any], uri: str) -> None:
        check_resumable(uri, checkpoint, self.config.to_dict(), RESUME_KEYS)
        self.recipe.load_state_dict(checkpoint["recipe"])

    def rank_state(self) -> dict[str, Any]:
        return {"recipe": self.recipe.rank_state()}

    def load_rank_state(self, state: Mapping[str, Any]) -> None:
        self.recipe.load_rank_state(state["recipe"])

    def describe(self) -> dict[str, Any]:
        data = self.data
        return {
            "method": self.config.method,
            "source_uri": data.source_uri,
            "target_uri": data.target_uri,
            "n_images": {"source": len(data.source), "target": len(data.target)},
            "n_unreadable": dict(data.unreadable),
        }

    def finish(
        self, out_uri: str, storage: Storage, card: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Validate the generator as ``harmonize run`` loads it (built from the saved model
        config, the trained weights loaded), then save it with the card."""
        method = self.config.method
        model_config = {**self.recipe.model_config(), "load_size": self.config.load_size}
        weights = self.recipe.generator_state()
        generator = gan_parts(method).build_generator(model_config)
        generator.load_state_dict(weights)
        harmonizer = NeuralHarmonizer(method, model_config, generator, device=self.device)
        target_histogram = site_histogram(self.data.target)
        images = self.data.source[: self.config.validation_images]
        validation = validate_generator(harmonizer, images, target_histogram)
        card = {
            **card,
            "intended_use": intended_use(
                method,
                target_uri=self.data.target_uri,
                source_uri=self.data.source_uri,
                n_images={"source": len(self.data.source), "target": len(self.data.target)},
                modes=harmonizer.modes,
            ),
            "validation": validation,
            "target_histogram": [float(v) for v in target_histogram],
        }
        model_uri = write_network(
            out_uri, method, model_config, weights, card=card, storage=storage
        )
        return model_uri, validation


def train(
    config: TrainConfig, data: TrainingData, out_uri: str, **options: Unpack[LoopOptions]
) -> TrainResult:
    """Train ``config.method`` on ``data`` with the one loop (``run_training``: its options,
    resume and outputs); the model (harmonizer.json + weights) goes under ``out_uri``.

    Raises:
        ConfigError: the data was prepared at another load size, or the checkpoint to resume
            was trained with other model settings.
    """
    return run_training(GanTask(config, data), out_uri, **options)
