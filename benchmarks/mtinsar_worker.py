"""mtinsar side of the benchmarks, run in its own process so its memory is its own.

    python mtinsar_worker.py e2e FRAME_DIR OUT_DIR REPORT.json [--ref-y Y --ref-x X --radius R]
                             [--via-store STACK.zarr] [--config JSON]
    python mtinsar_worker.py run FRAME_DIR OUT_DIR REPORT.json
    python mtinsar_worker.py inversion IFGRAMSTACK.h5 REF_Y REF_X DISP.npz REPORT.json

`e2e` times the user-facing pipeline: load_input -> run_sbas -> write_results; with
--via-store the frame is first ingested into a Zarr stack store (`mtinsar ingest`: load_input
+ stack.save, its own stage) and the run reads that store; the time series is computed in
memory. --config gives RunConfig sections as JSON (e.g. '{"dem_error": {"enabled": true}}'),
the defaults otherwise. `run` is `mtinsar run FRAME_DIR OUT_DIR` (`workflow.run_to_folder`:
the time series streamed to a Zarr store chunk by chunk, stages checkpointed), its stages
told apart by their log lines.
`inversion` times the weighted network inversion alone (what MintPy's ifgram_inversion does):
coherence -> weights 1/sigma^2 with the Cramer-Rao phase variance
sigma^2 = (1 - g^2) / (2 L g^2) (Rodriguez & Martin 1992), the reference pixel's phase taken
out of every pair, then `mtinsar.analysis.inversion.invert_sbas(..., weights=...)` block by block.
Peak RSS per stage is sampled from /proc/self/statm every 5 ms. BLAS runs one thread per call
unless the environment says otherwise, as under the `mtinsar` command (`single_threaded_blas`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from mtinsar.cli import single_threaded_blas

single_threaded_blas()  # before numpy is imported, as the `mtinsar` command does

import numpy as np  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Peak resident memory [MiB] seen during each named stage."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval = interval_s
        self.current_peak = 0
        self.stages: dict[str, dict[str, float]] = {}
        self._open: tuple[str, float, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.current_peak = max(self.current_peak, self.rss())
            time.sleep(self.interval)

    @staticmethod
    def cpu() -> float:
        """CPU seconds (user + system) of this process, all threads."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @contextmanager
    def stage(self, name: str):
        self.begin(name)
        yield
        self.end()

    def begin(self, name: str) -> None:
        """Start stage `name` (ending the current one, if any)."""
        if self._open is not None:
            self.end()
        self.current_peak = self.rss()
        self._open = name, time.perf_counter(), self.cpu()

    def end(self) -> None:
        name, start, cpu0 = self._open
        self._open = None
        wall, cpu = time.perf_counter() - start, self.cpu() - cpu0
        peak = max(self.current_peak, self.rss())
        self.stages[name] = {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "peak_rss_mib": round(peak / 2**20, 1),
        }
        print(
            f"{name}: {wall:.2f} s wall, {cpu:.2f} s CPU, peak {peak / 2**20:.0f} MiB", flush=True
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class StageLog(logging.Handler):
    """Turns the stage log lines of a run into sampler stages: the pipeline's `stage NAME`,
    and the writer's `writing results`."""

    def __init__(self, sampler: RssSampler) -> None:
        super().__init__(logging.INFO)
        self.sampler = sampler

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "mtinsar.workflows.pipeline" and record.msg == "stage %s":
            self.sampler.begin(str(record.args[0]))
        elif record.name == "mtinsar.results.writer" and str(record.msg).startswith(
            "writing results"
        ):
            self.sampler.begin("write_results")


def e2e(args: argparse.Namespace) -> dict:
    from mtinsar.config import RunConfig
    from mtinsar.results.writer import write_results
    from mtinsar.workflows.pipeline import load_input, run_sbas

    sections = json.loads(args.config)
    cfg = RunConfig.model_validate(sections)
    sampler = RssSampler()
    source = args.frame
    if args.via_store is not None:
        from mtinsar import stack as stack_store

        shutil.rmtree(args.via_store, ignore_errors=True)
        with sampler.stage("ingest to Zarr"):
            stack_store.save(load_input(args.frame, cfg), args.via_store, cfg.ingest.chunk_size)
        source = args.via_store
    with sampler.stage("load_input"):
        stack = load_input(source, cfg)
    if args.ref_y is not None:  # the reference is given in pixels: as lon/lat for the config
        lon, lat = float(stack["x"][args.ref_x]), float(stack["y"][args.ref_y])
        reference = {"lon": lon, "lat": lat, "radius": args.radius}
        cfg = RunConfig.model_validate({**sections, "reference": reference})
    with sampler.stage("run_sbas"):
        run = run_sbas(stack, cfg)
    with sampler.stage("write_results"):
        write_results(run, args.out, cfg.output)
    sampler.close()
    res = run.result
    np.savez(
        Path(args.out) / "bench_timeseries.npz",
        dates=res["time"].values.astype("datetime64[D]"),
        displacement=res["displacement"].values.astype(np.float32),
        velocity=res["velocity"].values.astype(np.float32),
        mask=res["mask"].values,
        **({"dem_error": res["dem_error"].values} if "dem_error" in res else {}),
    )
    return {
        "stages": sampler.stages,
        "run_sbas_substages_s": run.summary.get("timings_s", {}),
        "n_pairs": int(stack.sizes["pair"]),
        "n_dates": int(run.network.n_dates),
        "shape": [int(stack.sizes["y"]), int(stack.sizes["x"])],
        "reference_yx": [int(res.attrs["reference_y"]), int(res.attrs["reference_x"])],
    }


def run(args: argparse.Namespace) -> dict:
    """`mtinsar run FRAME OUT` with the default configuration, stage by stage."""
    import xarray as xr

    from mtinsar.config import RunConfig
    from mtinsar.workflows.jobs import run_to_folder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sampler = RssSampler()
    handler = StageLog(sampler)
    mtinsar_log = logging.getLogger("mtinsar")
    mtinsar_log.addHandler(handler)
    mtinsar_log.setLevel(logging.INFO)
    shutil.rmtree(args.out, ignore_errors=True)
    sampler.begin("open input")
    summary = run_to_folder(args.frame, args.out, RunConfig(), fresh=True)
    sampler.end()
    sampler.close()
    mtinsar_log.removeHandler(handler)
    with xr.open_zarr(Path(args.out) / "timeseries.zarr") as res:  # 2-D layers only
        shape = [int(res.sizes["y"]), int(res.sizes["x"])]
        np.savez(
            Path(args.out) / "bench_timeseries.npz",
            velocity=res["velocity"].values.astype(np.float32),
            mask=res["mask"].values,
        )
    return {
        "stages": sampler.stages,
        "run_sbas_substages_s": summary.get("timings_s", {}),
        "n_pairs": summary["n_pairs"],
        "n_dates": summary["n_dates"],
        "n_pixels": summary["n_pixels"],
        "shape": shape,
        "n_pixels_reliable": summary["n_pixels_reliable"],
        "reference_yx": [summary["reference"]["y"], summary["reference"]["x"]],
    }


def cramer_rao_weights(coh: np.ndarray, looks: int) -> np.ndarray:
    """Inverse phase variance [1/rad^2] from coherence, the Cramer-Rao bound
    (`mtinsar.simulate.coherence_phase_sigma` squared, inverted: 2 L g^2 / (1 - g^2));
    coherence clipped to [0.05, 0.9975] like MintPy's look-up table so weights stay finite."""
    g2 = np.clip(coh, np.float32(0.05), np.float32(0.9975)) ** 2
    return (2 * looks) * g2 / (1 - g2)


def inversion(args: argparse.Namespace) -> dict:
    from mtinsar.analysis.inversion import invert_sbas
    from mtinsar.analysis.network import Network
    from mtinsar.conventions import phase_to_displacement
    from mtinsar.io.mintpy import read_mintpy

    sampler = RssSampler()
    with sampler.stage("read_stack"):
        stack = read_mintpy(args.stack)
        unw = stack["unw"].values
        coh = stack["coh"].values
    network = Network.from_pair_dates(stack["ref_date"].values, stack["sec_date"].values)
    to_m = phase_to_displacement(float(stack.attrs["wavelength"]))
    ny, nx = unw.shape[1:]
    disp = np.full((network.n_dates, ny, nx), np.nan, dtype=np.float32)
    ref_phase = unw[:, args.ref_y, args.ref_x].astype(np.float64)
    n_solved = 0
    with sampler.stage("weighted_inversion"):
        for y0 in range(0, ny, args.block):
            ys = slice(y0, min(y0 + args.block, ny))
            block = unw[:, ys, :].reshape(network.n_pairs, -1).astype(np.float64)
            weights = cramer_rao_weights(coh[:, ys, :].reshape(network.n_pairs, -1), args.looks)
            res = invert_sbas(block - ref_phase[:, None], network, weights=weights)
            disp[:, ys, :] = (res.phase * to_m).reshape(network.n_dates, -1, nx)
            n_solved += int(res.solved.sum())
    sampler.close()
    np.savez(args.disp, dates=network.dates.astype("datetime64[D]"), displacement=disp)
    kernel = sampler.stages["weighted_inversion"]["wall_s"]
    return {
        "stages": sampler.stages,
        "n_pairs": network.n_pairs,
        "n_dates": network.n_dates,
        "n_pixels": ny * nx,
        "n_pixels_solved": n_solved,
        "throughput_pixel_pairs_per_s": round(ny * nx * network.n_pairs / kernel),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("e2e")
    p.add_argument("frame", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("report", type=Path)
    p.add_argument("--ref-y", type=int)
    p.add_argument("--ref-x", type=int)
    p.add_argument("--radius", type=int, default=0)
    p.add_argument("--via-store", type=Path, help="ingest to this Zarr store first")
    p.add_argument("--config", default="{}", help="RunConfig sections as JSON")
    p = sub.add_parser("run")
    p.add_argument("frame", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("report", type=Path)
    p = sub.add_parser("inversion")
    p.add_argument("stack", type=Path)
    p.add_argument("ref_y", type=int)
    p.add_argument("ref_x", type=int)
    p.add_argument("disp", type=Path)
    p.add_argument("report", type=Path)
    p.add_argument("--looks", type=int, default=20)
    p.add_argument("--block", type=int, default=64, help="rows per block")
    args = parser.parse_args()
    report = {"e2e": e2e, "run": run, "inversion": inversion}[args.cmd](args)
    args.report.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
