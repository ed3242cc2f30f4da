"""Near-real-time updates: a new acquisition appended to a result by sequential least
squares, the model refitted recursively, alerts; pure (the job layer writes and posts).

    append      `update`: one new date appended to a result, and its report
    new_pairs   the new date's pairs: checked, quality-controlled, DEM error removed
    sequential  the exact sequential least-squares step (compiled)
    frozen      the new date from a frozen history (results without their network)
    network     the run's pair network kept with its result (`attach_network`)
    state       the model's normal equations, from one pass over the stored history
    alerts      departures and velocity changes as GeoJSON features
    rerun       when a full re-inversion is due
    webhooks    POSTing the alerts (the only HTTP; called by the job layer)
"""

from mtinsar.nrt.append import UpdateReport, update

__all__ = ["UpdateReport", "update"]
