"""Corrections applied to the interferograms or the time series (reference point, ...)."""
