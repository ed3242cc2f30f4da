"""`mtinsar serve` and `mtinsar worker`: processing as a service (OGC API - Processes).

Modules: settings (ServiceConfig), db (tables, engine, migrations), auth (API keys, roles,
access rules), queue (submit, claim, lease, finish jobs), processes (what a job runs),
worker (the loop that runs jobs), app (the HTTP API), stac (results as STAC Items),
maps (tiles, time series and the web map).
"""
