"""The site detector sees every built-in shift family: trained on a family's training originals,
it tells the target's held-out originals from the source's with an AUC of at least 0.95 (the
families differ from their target; a harmonizer has something to remove)."""

from __future__ import annotations

import pytest

from harmonize.experiments.site import site_aucs, train_site_detector
from harmonize.io.storage import Storage
from harmonize.synth import synthesize_archive

from training_samples import classifier_config

#: Each target site and its families' source sites (docs/sites.md).
FAMILIES = {"shenzhen-like": ("mc-like", "portable-like"), "processed-dr": ("raw-dr", "cr-grid")}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def archives(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Training and test archives (different seeds) of one target and its source sites."""
    target = request.param
    root = tmp_path_factory.mktemp(target)
    for split, seed, n in (("train", 21, 24), ("test", 22, 16)):
        synthesize_archive(
            str(root / split), [target, *FAMILIES[target]], n, seed=seed, matrix=128,
            progress=False,
        )  # fmt: skip
    return target, root


@pytest.mark.slow
def test_the_site_detector_tells_each_family_from_its_target(archives: tuple) -> None:
    target, root = archives
    settings = classifier_config(
        steps=120, input_size=64, width=8, validate_every=120, checkpoint_every=120
    )
    for source in FAMILIES[target]:
        uri = str(root / "models" / source)
        validation = train_site_detector(
            settings, str(root / "train"), target, uri, Storage(), sources=(source,)
        )
        test = root / "test"
        aucs = site_aucs(uri, str(test / target), {"original": str(test / source)}, {}, Storage())
        assert aucs["original"] >= 0.95, (source, aucs, validation)
