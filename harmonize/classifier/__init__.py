"""The target-site classifier: a 1-channel ResNet-18-style CNN (finding / no finding), its config,
preprocessing, labelled data, training task and scoring of display images."""
