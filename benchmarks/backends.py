"""Weighted network inversion: the numpy backend against the JAX one, in one run.

    python benchmarks/backends.py [--pixels N] [--dates N]

Solves N pixels (default the medium scene's 480,000) of a LiCSAR-like network (80 dates,
~290 pairs, random per-pair weights and 2 % missing pairs) with `mtinsar.analysis.inversion.invert`
(method sbas, weights on) on each backend, and reports wall time, throughput and the largest
difference between the two. The JAX backend runs on JAX's default device: the CPU unless
jax was installed with CUDA, so on a CPU-only machine this only checks that it works; on a
GPU machine it is the GPU figure. Results go to benchmarks/results.json and results.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, update_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pixels", type=int, default=480_000, help="pixels to solve")
    parser.add_argument("--dates", type=int, default=80, help="acquisitions")
    parser.add_argument("--batch", type=int, default=48_000, help="pixels per invert call")
    args = parser.parse_args()

    import jax

    from mtinsar.analysis.inversion import invert
    from mtinsar.analysis.network import Network
    from mtinsar.simulate.scene import licsar_network

    dates = np.datetime64("2020-01-01") + 12 * np.arange(args.dates)
    ref, sec = np.array(licsar_network(dates, seed=0)).T
    net = Network.from_pair_dates(dates[ref], dates[sec])
    rng = np.random.default_rng(0)
    n = min(args.batch, args.pixels)
    truth = np.cumsum(rng.normal(0, 2, (net.n_dates, n)), axis=0)
    unw = truth[net.sec] - truth[net.ref] + rng.normal(0, 0.5, (net.n_pairs, n))
    unw[rng.random(unw.shape) < 0.02] = np.nan
    weights = rng.uniform(0.3, 50.0, unw.shape)

    results, phases = {}, {}
    for backend in ("numpy", "jax"):
        invert(unw[:, :64], net, weights=weights[:, :64], backend=backend)  # compile
        t0 = time.perf_counter()
        for _ in range(0, args.pixels, n):
            res = invert(unw, net, weights=weights, backend=backend)
        wall = time.perf_counter() - t0
        phases[backend] = res.phase
        results[backend] = {
            "wall_s": round(wall, 3),
            "throughput_pixel_pairs_per_s": round(args.pixels * net.n_pairs / wall),
        }
        print(backend, results[backend], flush=True)
    diff = np.nanmax(np.abs(phases["jax"] - phases["numpy"]))
    update_results(
        "backends",
        {
            "machine": machine(),
            "jax_device": str(jax.devices()[0]),
            "n_pixels": args.pixels,
            "n_dates": net.n_dates,
            "n_pairs": net.n_pairs,
            "backends": results,
            "max_abs_phase_diff_rad": float(diff),
            "jax_over_numpy_time": round(results["jax"]["wall_s"] / results["numpy"]["wall_s"], 3),
        },
    )
    print(f"max |jax - numpy| = {diff:.2e} rad on {jax.devices()[0]}")


if __name__ == "__main__":
    main()
