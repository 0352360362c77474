"""A trained CycleGAN in the streaming run: direct and curve modes, local and on Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from harmonize.dicom.decode import decode_dicom
from harmonize.io.manifest import read_manifest
from harmonize.models.registry import load_model
from harmonize.run import RunOptions, run_harmonization
from harmonize.training import load_train_config, prepare_training_data, train

from conftest import SOURCE, TARGET


@pytest.fixture(scope="module")
def cyclegan_model(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny CycleGAN trained for a few steps on the session archive (no Ray)."""
    out = str(tmp_path_factory.mktemp("cyclegan"))
    config = load_train_config(
        None,
        steps=4,
        crop_size=32,
        load_size=48,
        log_every=2,
        checkpoint_every=4,
        validation_images=2,
        model={"ngf": 8, "ndf": 8, "n_blocks": 2},
    )
    data = prepare_training_data(str(archive / SOURCE), str(archive / TARGET), 48, progress=False)
    train(config, data, out, progress=False)
    return out


def _run(archive: Path, model: str, out: Path, mode: str, executor: str) -> object:
    return run_harmonization(
        input_uri=str(archive / SOURCE),
        out_uri=str(out),
        method="cyclegan",
        model_uri=model,
        mode=mode,
        options=RunOptions(executor=executor, progress=False, limit=3),
    )


@pytest.mark.parametrize("mode", ["direct", "curve"])
def test_local_run_in_each_mode(archive, cyclegan_model, tmp_path, mode) -> None:
    summary = _run(archive, cyclegan_model, tmp_path, mode, "local")
    assert summary.counts == {"ok": 3}
    df = read_manifest(str(tmp_path)).to_pandas()
    assert set(df["mode"]) == {mode} and set(df.method) == {"cyclegan"}
    model = load_model(cyclegan_model, expected_method="cyclegan", mode=mode).harmonizer
    row = df.iloc[0]
    before = decode_dicom(Path(row.source_uri).read_bytes()).pixels
    after = model.transform(before)
    ref = structural_similarity(
        before, after, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert abs(row.ssim - ref) < 1e-4
    derived = decode_dicom(Path(row.out_uri).read_bytes()).pixels
    assert np.abs(derived - after).max() <= 1.0 / (2 ** int(row.bits_stored) - 1)
    if mode == "curve":  # a monotone curve: the order of pixel values is kept
        order = np.argsort(before, axis=None, kind="stable")
        assert np.all(np.diff(after.ravel()[order]) >= 0)


@pytest.mark.slow
def test_ray_run_modes_have_their_own_config_and_outputs(
    archive, cyclegan_model, ray_session, tmp_path
) -> None:
    for mode in ("curve", "direct"):
        assert _run(archive, cyclegan_model, tmp_path, mode, "ray").counts == {"ok": 3}
    df = read_manifest(str(tmp_path)).to_pandas()
    assert len(df) == 6 and df.groupby("mode").config_hash.nunique().to_dict() == {
        "curve": 1,
        "direct": 1,
    }
    assert df.config_hash.nunique() == 2 and df.out_uri.nunique() == 6
    # A re-run of one mode skips only that mode's objects.
    assert _run(archive, cyclegan_model, tmp_path, "curve", "ray").counts == {"skipped": 3}


def test_curve_mode_is_refused_for_classical_methods(archive, histogram_model, tmp_path) -> None:
    from harmonize.errors import ConfigError

    with pytest.raises(ConfigError, match='no mode "curve"'):
        run_harmonization(
            input_uri=str(archive / SOURCE),
            out_uri=str(tmp_path),
            method="histogram",
            model_uri=histogram_model,
            mode="curve",
            options=RunOptions(executor="local", progress=False),
        )
