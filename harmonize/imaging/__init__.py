"""Image preprocessing shared by training, inference and the classifier."""
