"""Training without Ray: configs, in-memory data, checkpoints, logs, the model card's validation
and the one loop that trains a GAN recipe or the target-site classifier."""
