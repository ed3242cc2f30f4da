"""Orchestration: the only layer that knows both the data (stores, products, result
folders) and the science; it wires the stages, runs them on Dask, checkpoints, resumes."""
