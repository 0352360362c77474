"""The benchmark experiment, the demo, and the configs that ship inside the package."""
