"""Speed and memory of mtinsar, and of MintPy on the same scene, in one run.

    python benchmarks/speed.py [--repeat N] [--large | --large-only] [--mintpy-workers N]
                               [--skip-app]

Simulates the medium scene (600 x 800 px, 80 dates; all nuisances on) into a LiCSAR frame,
exports it to MintPy's ifgramStack.h5/geometryGeo.h5 (`mtinsar.io.mintpy.write_mintpy`), then
measures, each tool in its own process:

* mtinsar end to end: load_input -> run_sbas -> write_results (wall time and peak RSS per
  stage and for the whole process);
* the network inversion with coherence weighting in both tools: mtinsar's
  `invert_sbas(..., weights=1/sigma^2)` (Cramer-Rao variance) against MintPy's
  `ifgram_inversion.py -w var`, same stack, same reference pixel; throughput in
  pixel*pairs/s, the time ratio mtinsar/MintPy, and the RMS velocity difference [mm/yr];
* MintPy's smallbaselineApp from the same inputs (see common.run_smallbaseline_app).

With --repeat N the timed runs are repeated (scene simulated once) to show how stable the
numbers are on a shared machine; ratios are taken within each repetition.
With --large the large scene (1500 x 2000 px, 150 dates, 554 pairs) is also run through
`mtinsar run` (see `run_large`); --large-only runs that alone.
Results go to benchmarks/results.json and benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_WORK,
    HERE,
    SceneFiles,
    available_memory_bytes,
    machine,
    measure,
    prepare_scene,
    python,
    read_h5,
    read_mintpy_timeseries,
    rms,
    run_ifgram_inversion,
    run_smallbaseline_app,
    update_results,
    velocity_of,
)

WORKER = str(HERE / "mtinsar_worker.py")


def mtinsar_e2e(scene: SceneFiles, work: Path, tag: str, via_store: bool = False) -> dict:
    out = work / f"mtinsar_e2e_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    report = work / f"mtinsar_e2e_{tag}.json"
    cmd = [python(), WORKER, "e2e", str(scene.licsar), str(out), str(report)]
    if via_store:
        cmd += ["--via-store", str(work / f"stack_{tag}.zarr")]
    m = measure(cmd, work / f"mtinsar_e2e_{tag}.log").check("mtinsar end to end")
    import json

    return {"process": m.numbers(), "out": str(out), **json.loads(report.read_text())}


def mtinsar_inversion(scene: SceneFiles, work: Path, tag: str) -> dict:
    import json

    disp = work / f"mtinsar_inversion_{tag}.npz"
    report = work / f"mtinsar_inversion_{tag}.json"
    cmd = [python(), WORKER, "inversion", str(scene.mintpy_inputs / "ifgramStack.h5"),
           str(scene.ref_yx[0]), str(scene.ref_yx[1]), str(disp), str(report)]  # fmt: skip
    m = measure(cmd, work / f"mtinsar_inversion_{tag}.log").check("mtinsar inversion")
    return {"process": m.numbers(), "disp": str(disp), **json.loads(report.read_text())}


def _mintpy_reported_time(log: Path) -> float | None:
    """MintPy's own 'time used: MM mins SS.S secs' (last one in the log)."""
    found = re.findall(r"time used: (\d+) mins ([\d.]+) secs", log.read_text(errors="replace"))
    return round(int(found[-1][0]) * 60 + float(found[-1][1]), 1) if found else None


def compare_inversions(mt: dict, mp_dir: Path, ref_yx: tuple[int, int]) -> dict:
    """RMS differences between the two weighted inversions over pixels both solved."""
    with np.load(mt["disp"]) as z:
        dates, d_mt = z["dates"], z["displacement"]
    dates_mp, d_mp = read_mintpy_timeseries(mp_dir / "timeseries.h5")
    if not np.array_equal(dates, dates_mp):
        raise RuntimeError("mtinsar and MintPy time series have different dates")
    n_inv = read_h5(mp_dir / "numInvIfgram.h5", "mask")
    both = np.isfinite(d_mt).all(axis=0) & (n_inv > 0)
    v_mt, v_mp = velocity_of(dates, d_mt), velocity_of(dates, d_mp)
    diff_v = (v_mt - v_mp)[both]
    diff_d = (d_mt - d_mp)[:, both]
    return {
        "n_pixels_compared": int(both.sum()),
        "velocity_rms_diff_mm_yr": round(rms(diff_v) * 1000, 4),
        "velocity_max_abs_diff_mm_yr": round(float(np.abs(diff_v).max()) * 1000, 4),
        "displacement_rms_diff_mm": round(rms(diff_d) * 1000, 4),
        "reference_yx": list(ref_yx),
    }


def compare_e2e(mt_out: Path, app_dir: Path, ref_yx: tuple[int, int]) -> dict:
    """mtinsar run_sbas velocity vs MintPy smallbaselineApp velocity.h5, same reference pixel.

    Not like for like: MintPy's app also corrects the DEM error (topographicResidual) and
    weights by coherence, mtinsar's run_sbas does neither (yet).
    """
    with np.load(mt_out / "bench_timeseries.npz") as z:
        v_mt = z["velocity"].astype(np.float64)
    v_mp = read_h5(app_dir / "velocity.h5", "velocity").astype(np.float64)
    mask_mp = read_h5(app_dir / "maskTempCoh.h5", "mask").astype(bool)
    ry, rx = ref_yx
    v_mt, v_mp = v_mt - v_mt[ry, rx], v_mp - v_mp[ry, rx]
    both = np.isfinite(v_mt) & mask_mp
    return {
        "n_pixels_compared": int(both.sum()),
        "velocity_rms_diff_mm_yr": round(rms((v_mt - v_mp)[both]) * 1000, 3),
    }


def one_round(scene: SceneFiles, work: Path, tag: str, args: argparse.Namespace) -> dict:
    print(f"--- round {tag}: mtinsar end to end", flush=True)
    e2e = mtinsar_e2e(scene, work, tag)
    print(f"    {e2e['process']}", flush=True)
    print(f"--- round {tag}: mtinsar ingest to Zarr, then end to end from the store", flush=True)
    e2e_store = mtinsar_e2e(scene, work, f"store_{tag}", via_store=True)
    print(f"    {e2e_store['process']}", flush=True)
    print(f"--- round {tag}: mtinsar weighted inversion", flush=True)
    inv = mtinsar_inversion(scene, work, tag)
    print(f"    {inv['process']} kernel {inv['stages']['weighted_inversion']}", flush=True)
    print(f"--- round {tag}: MintPy ifgram_inversion -w var", flush=True)
    mp = run_ifgram_inversion(scene, work / f"mintpy_inversion_{tag}", args.mintpy_workers)
    mp["reported_s"] = _mintpy_reported_time(Path(mp["dir"]) / "ifgram_inversion.log")
    print(f"    {mp}", flush=True)
    n_pp = inv["n_pixels"] * inv["n_pairs"]
    kernel = inv["stages"]["weighted_inversion"]["wall_s"]
    round_ = {
        "mtinsar_e2e": e2e,
        "mtinsar_e2e_via_store": e2e_store,
        "mtinsar_inversion": inv,
        "mintpy_ifgram_inversion": {
            **mp,
            "throughput_pixel_pairs_per_s": round(n_pp / mp["wall_s"]),
        },
        "inversion_time_ratio_mtinsar_over_mintpy": {
            "process_wall": round(inv["process"]["wall_s"] / mp["wall_s"], 4),
            "process_cpu": round(inv["process"]["cpu_s"] / mp["cpu_s"], 4),
            "kernel": round(kernel / mp["wall_s"], 4),
        },
        "inversion_agreement": compare_inversions(inv, Path(mp["dir"]), scene.ref_yx),
    }
    if not args.skip_app and tag == "1":  # the app once: it repeats the inversion, ~2x as long
        print(f"--- round {tag}: MintPy smallbaselineApp", flush=True)
        app = run_smallbaseline_app(scene, work / f"mintpy_app_{tag}", args.mintpy_workers)
        print(f"    {app}", flush=True)
        round_["mintpy_smallbaselineApp"] = app
        round_["e2e_time_ratio_mtinsar_over_mintpy"] = {
            "wall": round(e2e["process"]["wall_s"] / app["wall_s"], 4),
            "cpu": round(e2e["process"]["cpu_s"] / app["cpu_s"], 4),
        }
        round_["e2e_agreement"] = compare_e2e(Path(e2e["out"]), Path(app["dir"]), scene.ref_yx)
    return round_


def _summary(rounds: list[dict]) -> dict:
    """Median over rounds of the headline numbers, with every value kept."""

    def pick(path: str) -> list[float]:
        out = []
        for r in rounds:
            value = r
            for key in path.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int | float):
                out.append(value)
        return out

    keys = {
        "mtinsar_e2e_wall_s": "mtinsar_e2e.process.wall_s",
        "mtinsar_e2e_cpu_s": "mtinsar_e2e.process.cpu_s",
        "mtinsar_e2e_peak_rss_mib": "mtinsar_e2e.process.peak_rss_mib",
        "mtinsar_store_e2e_wall_s": "mtinsar_e2e_via_store.process.wall_s",
        "mtinsar_store_e2e_cpu_s": "mtinsar_e2e_via_store.process.cpu_s",
        "mtinsar_store_e2e_peak_rss_mib": "mtinsar_e2e_via_store.process.peak_rss_mib",
        "mtinsar_inversion_process_wall_s": "mtinsar_inversion.process.wall_s",
        "mtinsar_inversion_process_cpu_s": "mtinsar_inversion.process.cpu_s",
        "mtinsar_inversion_kernel_s": "mtinsar_inversion.stages.weighted_inversion.wall_s",
        "mtinsar_inversion_peak_rss_mib": "mtinsar_inversion.process.peak_rss_mib",
        "mtinsar_inversion_throughput": "mtinsar_inversion.throughput_pixel_pairs_per_s",
        "mintpy_inversion_wall_s": "mintpy_ifgram_inversion.wall_s",
        "mintpy_inversion_cpu_s": "mintpy_ifgram_inversion.cpu_s",
        "mintpy_inversion_peak_rss_mib": "mintpy_ifgram_inversion.peak_rss_mib",
        "mintpy_inversion_throughput": "mintpy_ifgram_inversion.throughput_pixel_pairs_per_s",
        "inversion_ratio_process": "inversion_time_ratio_mtinsar_over_mintpy.process_wall",
        "inversion_ratio_cpu": "inversion_time_ratio_mtinsar_over_mintpy.process_cpu",
        "inversion_ratio_kernel": "inversion_time_ratio_mtinsar_over_mintpy.kernel",
        "inversion_velocity_rms_diff_mm_yr": "inversion_agreement.velocity_rms_diff_mm_yr",
        "mintpy_app_wall_s": "mintpy_smallbaselineApp.wall_s",
        "mintpy_app_cpu_s": "mintpy_smallbaselineApp.cpu_s",
        "mintpy_app_peak_rss_mib": "mintpy_smallbaselineApp.peak_rss_mib",
        "e2e_ratio": "e2e_time_ratio_mtinsar_over_mintpy.wall",
        "e2e_ratio_cpu": "e2e_time_ratio_mtinsar_over_mintpy.cpu",
        "e2e_velocity_rms_diff_mm_yr": "e2e_agreement.velocity_rms_diff_mm_yr",
    }
    out = {}
    for name, path in keys.items():
        values = pick(path)
        if values:
            out[name] = {"median": statistics.median(values), "all": values}
    return out


#: The issue's memory target for the large scene [GiB], and what must be free to try it.
LARGE_TARGET_GIB = 4.0
LARGE_MARGIN_GIB = 1.0


def run_large(work: Path) -> dict:
    """`mtinsar run FRAME OUT` (default configuration) on the large scene, stage by stage.

    The pipeline works chunk by chunk (`ingest.chunk_size`² pixels with every pair, pixel
    batches inside a chunk) and streams the time series to its Zarr store, so its memory is
    set by the chunk size, not the scene (docs/scaling.md); the target is a peak RSS of at
    most LARGE_TARGET_GIB. The run is skipped, and says so, when the memory available now is
    below the target plus a margin, rather than risk the OOM killer on a shared machine. The
    scene (~10 GB of GeoTIFFs) is simulated into `work`/large with bounded memory (truth
    cubes spilled to disk) and kept for the next run: delete it when done. MintPy is not run
    on this scene (hours, serially).
    """
    from mtinsar.simulate import SceneConfig, acquisition_dates, licsar_network

    cfg = SceneConfig.preset("large")
    n_pairs = len(licsar_network(acquisition_dates(cfg), cfg.seed))
    need = (LARGE_TARGET_GIB + LARGE_MARGIN_GIB) * 2**30
    free = available_memory_bytes()
    info = {
        "scene": {"preset": "large", **cfg.model_dump()},
        "n_pairs": n_pairs,
        "target_peak_rss_gib": LARGE_TARGET_GIB,
        "available_gib": round(free / 2**30, 1),
    }
    if need > free:
        print(f"large scene skipped: {free / 2**30:.1f} GiB available, {need / 2**30:.0f} needed")
        return {**info, "skipped": f"less than {need / 2**30:.0f} GiB of memory available"}
    scene = prepare_scene("large", cfg, work, mintpy=False)
    out, report = work / "mtinsar_run_large", work / "mtinsar_run_large.json"
    cmd = [python(), WORKER, "run", str(scene.licsar), str(out), str(report)]
    print("--- large scene: mtinsar run", flush=True)
    m = measure(cmd, work / "mtinsar_run_large.log").check("mtinsar run (large)")
    print(f"    {m.numbers()}", flush=True)
    import json

    run = {"process": m.numbers(), "out": str(out), **json.loads(report.read_text())}
    peak_gib = m.peak_rss_mib / 1024
    return {**info, "mtinsar_run": run, "meets_target": peak_gib <= LARGE_TARGET_GIB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="timed rounds (default 1)")
    parser.add_argument("--large", action="store_true", help="also run the large scene")
    parser.add_argument("--large-only", action="store_true", help="run the large scene alone")
    parser.add_argument(
        "--mintpy-workers",
        type=int,
        default=1,
        help="MintPy Dask workers (default 1 = MintPy's default serial run)",
    )
    parser.add_argument("--skip-app", action="store_true", help="skip smallbaselineApp")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folder")
    parser.add_argument(
        "--preset", default="medium", help="scene preset (default medium; small = smoke test)"
    )
    args = parser.parse_args()

    from mtinsar.simulate import SceneConfig

    if args.large_only:
        update_results("speed_large", {"machine": machine(), **run_large(args.work)})
        print(f"results: {HERE / 'results.md'}")
        return
    cfg = SceneConfig.preset(args.preset)
    scene = prepare_scene(args.preset, cfg, args.work)
    rounds = [one_round(scene, args.work, str(k + 1), args) for k in range(args.repeat)]
    result = {
        "machine": machine(),
        "scene": {"preset": args.preset, **cfg.model_dump()},
        "mintpy_workers": args.mintpy_workers,
        "summary": _summary(rounds),
        "rounds": rounds,
    }
    update_results("speed" if args.preset == "medium" else f"speed_{args.preset}", result)
    if args.large:
        update_results("speed_large", {"machine": machine(), **run_large(args.work)})
    print(f"results: {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
