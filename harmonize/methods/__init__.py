"""The harmonization methods: classical (fitted) and neural (trained) harmonizers at inference."""
