"""CUDA graphs in the GAN step, where a CUDA device is here (skipped otherwise; `harmonize bench
device` runs this module on a GPU machine): compiled networks replayed as CUDA graphs make the
same steps as compiled networks without graphs, and the image pools keep their own copies of the
fakes. (The tuned configuration's training of every method is timed by the benchmark itself.)"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)"
)


def test_cuda_graphs_make_the_same_steps_as_compiled_networks(tiny_recipe, toy_batch) -> None:
    options = {"device": "cuda", "compile": True, "model": {"pool_size": 2}}
    plain = tiny_recipe("cyclegan", **options)
    graphs = tiny_recipe("cyclegan", cuda_graphs=True, **options)
    for seed in range(6):  # past warm-up and recording, and past the pool filling up
        batch = toy_batch(seed % 3)
        expected, got = plain.train_step(*batch), graphs.train_step(*batch)
        assert got == pytest.approx(expected, rel=1e-3, abs=1e-5)
    outputs = {
        t.untyped_storage().data_ptr()
        for t in graphs.generators(*(x.cuda() for x in batch))
        if t is not None
    }
    for image in graphs.pool_a.images + graphs.pool_b.images:
        assert image.untyped_storage().data_ptr() not in outputs
    for name, weight in plain.generators.state_dict().items():
        torch.testing.assert_close(
            graphs.generators.state_dict()[name], weight, rtol=1e-3, atol=1e-4
        )
