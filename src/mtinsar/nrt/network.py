"""The run's pair network kept with its result (`nrt_network`): what makes an update's
sequential step exact (`mtinsar.nrt.sequential`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from mtinsar.analysis.network import Network
from mtinsar.errors import InputError


def network_information(network: Network) -> np.ndarray:
    """Information matrix (n_dates, n_dates) of the run's unit-weight pair network.

    The weighted pair-graph Laplacian Σ a aᵀ, a = e_sec - e_ref: what `update` needs, with
    date 0 held fixed, for the covariance of the estimated dates (Q = L[1:, 1:]⁻¹ per unit
    pair variance).
    """
    lap = np.zeros((network.n_dates, network.n_dates))
    np.add.at(lap, (network.ref, network.ref), 1.0)
    np.add.at(lap, (network.sec, network.sec), 1.0)
    np.add.at(lap, (network.ref, network.sec), -1.0)
    np.add.at(lap, (network.sec, network.ref), -1.0)
    return lap


def attach_network(result: xr.Dataset, network: Network) -> xr.Dataset:
    """`result` with its pair network's information matrix (`nrt_network`), for `update`.

    With it an update re-estimates the whole history by the exact sequential least-squares
    step (`sequential_update`); without it only the new date is estimated.
    """
    lap = network_information(network)
    if lap.shape[0] != result.sizes["time"]:
        raise InputError(
            f"the network has {lap.shape[0]} dates but the result {result.sizes['time']}; "
            "pass the network of the run that made this result"
        )
    return result.assign(nrt_network=(("nrt_date", "nrt_date_2"), lap))


def extended(information: np.ndarray, old_index: np.ndarray) -> np.ndarray:
    """`information` (n, n) with one new date linked by a unit-weight pair to each date of
    `old_index` (k,): (n + 1, n + 1), so that the next update's step is exact again."""
    lap = np.pad(information, ((0, 1), (0, 1)))
    last = information.shape[0]
    for o in old_index:
        lap[[o, last], [o, last]] += 1.0
        lap[o, last] -= 1.0
        lap[last, o] -= 1.0
    return lap
