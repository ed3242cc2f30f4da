"""Science: the pure array kernels of the analysis (pair network, QC and loop closure,
SBAS/NSBAS inversion, time-series model, asc/desc decomposition, GNSS tie). Cited, shapes
and units in the docstrings; nothing here reads files, knows Dask or speaks HTTP."""
