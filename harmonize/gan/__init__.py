"""The image-to-image GANs (CycleGAN, UNIT, CUT): shared layers, losses, schedules and recipe."""
