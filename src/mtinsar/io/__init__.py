"""Readers of interferogram products (one module per format) and writers of exports.

Each reader returns an `IfgStack` (see `mtinsar.stack`). Modules are imported on demand,
e.g. `from mtinsar.io.licsar import read_licsar`, so importing one format does not pull in
the dependencies of the others.
"""
