"""The image-to-image GANs (CycleGAN, UNIT): shared layers, losses, schedules and recipe."""
