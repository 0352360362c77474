"""Saved models: the one model-file writer and reader, and the one method registry."""
