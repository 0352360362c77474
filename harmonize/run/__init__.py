"""A harmonization run: its spec, per-object stages, plan, the local executor and orchestration."""
