"""CycleGAN (Zhu et al. 2017): its config, networks and training recipe."""
