"""The history of generated images a CycleGAN discriminator learns from (Shrivastava et al. 2017).

Example::

    pool = ImagePool(50, seed=0)
    fakes_for_d = pool.query(fake_b.detach())   # same shape; some images from earlier steps
"""

from __future__ import annotations

from typing import Any

import torch

from harmonize.errors import ConfigError


class ImagePool:
    """A pool of up to ``size`` generated images.

    ``query(images)`` returns a batch of the same size: while the pool holds fewer than ``size``
    images every new image is stored and returned; once full, each new image is, with
    probability 1/2, swapped with a uniformly chosen stored one (the stored one is returned and
    the new one kept), otherwise returned as is. ``size`` 0 returns the input unchanged. Images
    are stored detached. Random draws come from a private, seeded CPU generator whose state is
    part of ``state_dict`` so a resumed run makes the same draws.
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        if size < 0:
            raise ConfigError(f"image pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() > 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator).item())
                out.append(self.images[index])
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "images": [image.cpu() for image in self.images],
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        if state["size"] != self.size:
            raise ConfigError(
                f"image pool state holds a pool of {state['size']} images, this pool has "
                f"{self.size}; resume with the pool_size the checkpoint was trained with"
            )
        self.images = [image.to(device) for image in state["images"]]
        self.generator.set_state(state["rng"])
