"""Near-real-time update against a full re-run: speed and agreement.

    python benchmarks/nrt_update.py [--preset medium|small] [--withhold 5] [--work DIR]

Simulates the scene (`SceneConfig.preset`, default medium: 600 x 800 px, 80 dates) into a
LiCSAR frame, then, each step in its own measured process (`common.measure`):

1. `mtinsar run` on the frame without the pairs touching its last 5 dates;
2. `mtinsar update` five times, each on a frame holding one more date (hard-linked copies
   of the pair folders, so nothing is copied), i.e. one new acquisition per update;
3. `mtinsar run` on all dates, with the reference point of the first run (the full
   re-run an update stands in for), twice: the faster is the reference.

Reported: each update's wall time as a fraction of the full re-run's (target <= 5 %), also
its in-process compute time (update.json `timings_s.total`, without interpreter start-up and
the version write), and the same five updates made one after the other inside one process,
as `mtinsar watch` makes them (`in_process_s`: reading, estimating and writing each
version, the interpreter, imports and `workflow.warm_up` paid once before; the median of
three rounds); and the RMS difference [mm/yr]
between the velocity after the last update and the full re-run's, over the pixels reliable
in both (target <= 0.5 mm/yr).
Results go to benchmarks/results.json (section nrt_update[_PRESET]) and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_WORK,
    HERE,
    machine,
    measure,
    prepare_scene,
    python,
    rms,
    update_results,
)

TARGET_FRACTION = 0.05
#: Rounds of the five resident updates (each on a fresh copy of the first run's result).
ROUNDS = 3
#: Full re-runs timed; the fastest is the reference (it makes each fraction larger).
RERUNS = 2
TARGET_RMS_MM_YR = 0.5


def stage_frame(frame: Path, target: Path, later: set[str]) -> Path:
    """A copy of `frame` (hard links) without the pair folders touching any date in `later`."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(frame, target, copy_function=os.link)
    for pair in (target / "interferograms").iterdir():
        if set(pair.name.split("_")) & later:
            shutil.rmtree(pair)
    return target


def mtinsar(args: list[str], log: Path) -> dict:
    return measure([python(), "-m", "mtinsar", *args, "-q"], log).check(args[0]).numbers()


#: The updates of `stages` made inside one process (what `mtinsar watch` does): seconds each.
_RESIDENT = """
import json, sys, time
from pathlib import Path
from mtinsar.workflows import jobs as workflow
from mtinsar.config import RunConfig
import mtinsar.io.licsar  # noqa: F401  a watcher has its reader imported after the first look
workflow.warm_up()  # as `mtinsar watch` does when it starts
cfg, out = RunConfig(), []
for stage in sys.argv[2:]:
    start = time.perf_counter()
    workflow.update_folder(Path(sys.argv[1]), Path(stage), cfg)
    out.append(round(time.perf_counter() - start, 3))
print(json.dumps(out))
"""


def resident_updates(results: Path, stages: list[Path]) -> list[float]:
    """Seconds of each update of `stages` onto `results`, all made in one process."""
    import subprocess

    cmd = [python(), "-c", _RESIDENT, str(results), *map(str, stages)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="medium", help="scene preset (small: smoke test)")
    parser.add_argument("--withhold", type=int, default=5, help="dates added by updates")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folder")
    args = parser.parse_args()

    import xarray as xr

    from mtinsar.results import versions
    from mtinsar.simulate import SceneConfig, acquisition_dates

    cfg = SceneConfig.preset(args.preset)
    scene = prepare_scene(f"nrt_{args.preset}", cfg, args.work, mintpy=False)
    work = args.work / f"nrt_{args.preset}"
    dates = [str(d).replace("-", "") for d in acquisition_dates(cfg)]
    n = args.withhold
    stages = [
        stage_frame(scene.licsar, work / f"upto_{k}", set(dates[len(dates) - n + k :]))
        for k in range(n + 1)
    ]  # stages[k]: every date but the last n - k

    # what every `mtinsar update` process pays before any work: the interpreter and imports
    # (a resident `mtinsar watch` pays it once)
    imports = (
        measure(
            [python(), "-c", "import mtinsar.cli, mtinsar.workflows.jobs, mtinsar.nrt"],
            work / "imports.log",
        )
        .check("imports")
        .numbers()
    )
    results, rerun = work / "results", work / "rerun"
    for folder in (results, rerun):
        shutil.rmtree(folder, ignore_errors=True)
    first = mtinsar(["run", str(stages[0]), str(results)], work / "run.log")
    watched = work / "results_watch"
    shutil.rmtree(watched, ignore_errors=True)
    shutil.copytree(results, watched)
    base = work / "results_base"  # the first run, for each round of resident updates
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(results, base)
    updates = []
    for k in range(1, n + 1):
        m = mtinsar(["update", str(results), str(stages[k])], work / f"update_{k}.log")
        report = json.loads((results / "versions" / f"v{k}" / "update.json").read_text())[-1]
        updates.append({"date": report["date"], **m, "compute_s": report["timings_s"]["total"]})
    rounds = []  # seconds are noisy on a shared machine: the median of ROUNDS rounds
    for _ in range(ROUNDS):
        shutil.rmtree(watched, ignore_errors=True)
        shutil.copytree(base, watched)
        rounds.append(resident_updates(watched, stages[1:]))
    in_process = [round(float(np.median(r)), 3) for r in zip(*rounds, strict=True)]
    ref = versions.open_version(results, 0).attrs
    reruns = [
        mtinsar(
            [
                "run",
                str(stages[n]),
                str(rerun),
                "--ref-lon",
                str(ref["reference_lon"]),
                "--ref-lat",
                str(ref["reference_lat"]),
            ],
            work / "rerun.log",
        )  # fmt: skip
        for _ in range(RERUNS)
    ]
    full = min(reruns, key=lambda r: r["wall_s"])  # the faster: fractions on the safe side

    updated = versions.open_version(results)
    again = xr.open_zarr(rerun / "timeseries.zarr")
    mask = (updated["mask"].values & again["mask"].values).astype(bool)
    diff = (updated["velocity"].values - again["velocity"].values)[mask] * 1e3
    diff = diff[np.isfinite(diff)]
    for u in updates:
        u["fraction_of_full_rerun"] = round(u["wall_s"] / full["wall_s"], 4)
        u["compute_fraction_of_full_rerun"] = round(u["compute_s"] / full["wall_s"], 4)
        u["resident_s"] = round(u["wall_s"] - imports["wall_s"], 3)
        u["resident_fraction_of_full_rerun"] = round(u["resident_s"] / full["wall_s"], 4)
    for u, seconds, each in zip(updates, in_process, zip(*rounds, strict=True), strict=True):
        u["in_process_s"] = seconds
        u["in_process_rounds_s"] = list(each)
        u["in_process_fraction_of_full_rerun"] = round(seconds / full["wall_s"], 4)
    worst = max(u["fraction_of_full_rerun"] for u in updates)
    worst_resident = max(u["resident_fraction_of_full_rerun"] for u in updates)
    worst_in_process = max(u["in_process_fraction_of_full_rerun"] for u in updates)
    rms_mm = round(rms(diff), 4)
    data = {
        "machine": machine(),
        "scene": {"preset": args.preset, **cfg.model_dump()},
        "n_dates": len(dates),
        "withheld": n,
        "first_run": first,
        "imports": imports,
        "updates": updates,
        "full_rerun": full,
        "full_rerun_walls_s": [r["wall_s"] for r in reruns],
        "max_update_fraction": worst,
        "max_resident_update_fraction": worst_resident,
        "max_in_process_update_fraction": worst_in_process,
        "velocity_rms_diff_mm_yr": rms_mm,
        "n_pixels_compared": int(diff.size),
        "targets": {"update_fraction": TARGET_FRACTION, "velocity_rms_mm_yr": TARGET_RMS_MM_YR},
        "met": {
            "update_fraction": worst <= TARGET_FRACTION,
            "update_fraction_in_process": worst_in_process <= TARGET_FRACTION,
            "velocity_rms": rms_mm <= TARGET_RMS_MM_YR,
        },
    }
    update_results("nrt_update" if args.preset == "medium" else f"nrt_update_{args.preset}", data)
    walls = ", ".join(f"{u['wall_s']:.1f} s" for u in updates)
    resident = ", ".join(f"{s:.1f} s" for s in in_process)
    print(
        f"updates: {walls} as processes, {resident} in one process, vs full re-run "
        f"{full['wall_s']:.1f} s (worst {worst:.1%}, in one process {worst_in_process:.1%}); "
        f"velocity RMS diff {rms_mm:.3f} mm/yr"
    )
    print(f"results: {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
