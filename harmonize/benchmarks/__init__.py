"""Benchmarks behind `harmonize bench`: each prints ratios measured side by side in one process."""
