"""Accuracy of mtinsar and MintPy against the simulator's truth, side by side.

    python benchmarks/accuracy.py [--work DIR] [--mintpy-workers N] [--preset P]
                                  [--reuse-mintpy] [--reuse-mtinsar]

Scene: the medium preset with the troposphere off (no turbulent, no stratified delay: MintPy's
weather-model correction would need downloads); DEM error, decorrelation noise, the lake,
the ploughed field and the per-pair offsets stay on. Both tools use the simulator's
reference pixel (mtinsar: reference lon/lat of that pixel with radius 0, i.e. the single
pixel, as MintPy's REF_Y/REF_X).

MintPy runs smallbaselineApp from the exported inputs/ (load_data skipped; see
common.run_smallbaseline_app and README.md): network inversion weighted by coherence ('var'),
DEM-error correction (topographicResidual), no troposphere correction, no deramping.

Scored, all relative to the reference pixel and the first date, over the truth's coherent
pixels that every variant estimated ("common"), and over each tool's own reliability mask:

* mtinsar run_sbas (the pipeline as it is: unweighted SBAS, no DEM-error correction);
* mtinsar weighted inversion (invert_sbas with Cramer-Rao weights), no DEM-error correction;
* mtinsar like MintPy: the pipeline with the settings of the MintPy run (`LIKE_MINTPY`:
  coherence weighting with the PDF phase variance, DEM-error correction with MintPy's
  default quadratic deformation model), with mtinsar's DEM-error estimator (phase velocity,
  Tukey reweighting) and with MintPy's (least squares on the phase, `LIKE_MINTPY_LS`);
* MintPy ifgram_inversion output (timeseries.h5 of the app run);
* MintPy after DEM-error correction (timeseries_demErr.h5), and its velocity.h5.

Velocities are linear fits of each time series (the fit mtinsar uses); velocity.h5 is
MintPy's own fit (it may leave out dates listed in exclude_date.txt).
"""

from __future__ import annotations

import argparse
import json
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
    read_h5,
    read_mintpy_timeseries,
    rms,
    run_smallbaseline_app,
    update_results,
    velocity_of,
)

WORKER = str(HERE / "mtinsar_worker.py")
#: mtinsar set up as smallbaselineApp runs here: coherence weighting with the phase variance
#: of the multilook PDF (MintPy's 'var', L = 20 looks) and the DEM-error correction with
#: MintPy's default deformation model (quadratic polynomial, no periodic terms, no steps).
#: mtinsar's own DEM-error estimator (phase velocity, Tukey reweighting) in the first,
#: MintPy's (least squares on the phase) in the second.
LIKE_MINTPY = {
    "inversion": {"weighting": "coherence", "variance_model": "pdf", "looks": 20},
    "dem_error": {"enabled": True, "poly_order": 2, "periods": [], "step_dates": []},
}
LIKE_MINTPY_LS = {
    **LIKE_MINTPY,
    "dem_error": {**LIKE_MINTPY["dem_error"], "phase_velocity": False, "robust": False},
}
#: run folder -> (label, config sections)
LIKE_RUNS = {
    "mtinsar_like_mintpy": ("mtinsar like MintPy (weighted, DEM-error corr.)", LIKE_MINTPY),
    "mtinsar_like_mintpy_ls": (
        "mtinsar like MintPy, MintPy's DEM-error estimator (phase LS)",
        LIKE_MINTPY_LS,
    ),
}


def _mtinsar_runs(scene, work: Path, reuse: bool) -> dict[str, dict]:  # noqa: ANN001
    """Run mtinsar's variants (or with `reuse`, take those of an earlier run in `work`):
    wall time, CPU time and peak RSS of each, by run folder name."""
    ref = scene.ref_yx
    runs = {"mtinsar_e2e": {}, **{name: sections for name, (_, sections) in LIKE_RUNS.items()}}
    cmds = {
        name: [python(), WORKER, "e2e", str(scene.licsar), str(work / name),
               str(work / f"{name}.json"), "--ref-y", str(ref[0]), "--ref-x", str(ref[1]),
               "--radius", "0", "--config", json.dumps(sections)]
        for name, sections in runs.items()
    }  # fmt: skip
    cmds["mtinsar_inversion"] = [
        python(), WORKER, "inversion", str(scene.mintpy_inputs / "ifgramStack.h5"),
        str(ref[0]), str(ref[1]), str(work / "inversion.npz"), str(work / "inv.json"),
    ]  # fmt: skip
    numbers = {}
    for name, cmd in cmds.items():
        stamp = work / f"{name}.measured.json"
        if reuse:
            if not stamp.is_file():
                raise SystemExit(f"--reuse-mtinsar: {stamp} missing; run without it first")
            print(f"--- {name}: reusing {work}", flush=True)
            numbers[name] = json.loads(stamp.read_text())
            continue
        print(f"--- {name}", flush=True)
        if name in runs:
            shutil.rmtree(work / name, ignore_errors=True)
        numbers[name] = measure(cmd, work / f"{name}.log").check(name).numbers()
        stamp.write_text(json.dumps(numbers[name]))
    return numbers


def _mintpy_app(scene, target: Path, args: argparse.Namespace) -> dict:  # noqa: ANN001
    """smallbaselineApp on the scene, or with --reuse-mintpy the result of an earlier run in
    `target`, with the numbers measured then (`measured.json`); a run whose measuring
    process did not finish gets its wall time from the folder's file times, no CPU/RSS."""
    if not args.reuse_mintpy:
        print("--- MintPy smallbaselineApp", flush=True)
        return run_smallbaseline_app(scene, target, args.mintpy_workers)
    if not (target / "velocity.h5").is_file():
        raise SystemExit(f"--reuse-mintpy: no smallbaselineApp results in {target}")
    print(f"--- MintPy smallbaselineApp: reusing {target}", flush=True)
    stamp = target / "measured.json"
    if stamp.is_file():
        return {**json.loads(stamp.read_text()), "dir": str(target)}
    last = max(f.stat().st_mtime for f in target.glob("*.h5"))
    wall = round(last - (target / "bench.cfg").stat().st_mtime, 2)
    return {"wall_s": wall, "cpu_s": float("nan"), "peak_rss_mib": float("nan"),
            "dir": str(target)}  # fmt: skip


def _section(preset: str) -> str:
    return "accuracy" if preset == "medium" else f"accuracy_{preset}"


def _truth(frame: Path, ref_yx: tuple[int, int]) -> dict[str, np.ndarray]:
    from mtinsar.simulate import load_truth
    from mtinsar.simulate.score import referenced_truth

    truth = load_truth(frame)
    vel, disp = referenced_truth(truth, *ref_yx)
    return {
        "dates": truth["time"].values.astype("datetime64[D]"),
        "velocity": np.asarray(vel, dtype=np.float64),
        "displacement": np.asarray(disp, dtype=np.float64),
        "coherent": truth["coherent"].values.astype(bool),
    }


def _referenced(disp: np.ndarray, ref_yx: tuple[int, int]) -> np.ndarray:
    """(time, y, x) series relative to the first date and the reference pixel."""
    d = np.asarray(disp, dtype=np.float64)
    d = d - d[:1]
    return d - d[:, ref_yx[0] : ref_yx[0] + 1, ref_yx[1] : ref_yx[1] + 1]


def _score(
    disp: np.ndarray,
    vel: np.ndarray,
    truth: dict[str, np.ndarray],
    common: np.ndarray,
    own: np.ndarray,
) -> dict[str, float]:
    coherent = truth["coherent"]
    own = own & coherent & np.isfinite(vel)
    return {
        "velocity_rmse_mm_yr_common": round(rms((vel - truth["velocity"])[common]) * 1000, 3),
        "displacement_rmse_mm_common": round(
            rms((disp - truth["displacement"])[:, common]) * 1000, 3
        ),
        "velocity_rmse_mm_yr_own_mask": round(rms((vel - truth["velocity"])[own]) * 1000, 3),
        "coverage_own_mask": round(float(own.sum() / coherent.sum()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folder")
    parser.add_argument("--mintpy-workers", type=int, default=1, help="MintPy Dask workers")
    parser.add_argument(
        "--preset", default="medium", help="scene preset (default medium; small = smoke test)"
    )
    parser.add_argument(
        "--reuse-mintpy",
        action="store_true",
        help="reuse smallbaselineApp's results of an earlier run on the same scene",
    )
    parser.add_argument(
        "--reuse-mtinsar",
        action="store_true",
        help="reuse mtinsar's results of an earlier run on the same scene",
    )
    args = parser.parse_args()

    from mtinsar.simulate import SceneConfig

    cfg = SceneConfig.preset(args.preset, turbulence=False, stratified=False)
    scene = prepare_scene(f"{args.preset}_notropo", cfg, args.work)
    ref = scene.ref_yx
    work = args.work / f"accuracy_{args.preset}"
    work.mkdir(parents=True, exist_ok=True)

    timings = _mtinsar_runs(scene, work, args.reuse_mtinsar)
    app = _mintpy_app(scene, work / "mintpy_app", args)
    app_dir = Path(app["dir"])

    truth = _truth(scene.licsar, ref)
    dates = truth["dates"]
    with np.load(work / "mtinsar_e2e" / "bench_timeseries.npz") as z:
        e2e_disp, e2e_mask = _referenced(z["displacement"], ref), z["mask"]
    like = {}
    for name, (label, _) in LIKE_RUNS.items():
        with np.load(work / name / "bench_timeseries.npz") as z:
            like[label] = (_referenced(z["displacement"], ref), z["mask"].astype(bool))
    with np.load(work / "inversion.npz") as z:
        inv_disp = _referenced(z["displacement"], ref)
    series = {
        "mtinsar run_sbas (unweighted, no DEM-error corr.)": e2e_disp,
        "mtinsar invert_sbas weighted (no DEM-error corr.)": inv_disp,
        **{label: disp for label, (disp, _) in like.items()},
    }
    for label, file in (
        ("MintPy ifgram_inversion -w var (timeseries.h5)", "timeseries.h5"),
        ("MintPy + DEM-error corr. (timeseries_demErr.h5)", "timeseries_demErr.h5"),
    ):
        mp_dates, mp_disp = read_mintpy_timeseries(app_dir / file)
        if not np.array_equal(mp_dates, dates):
            raise RuntimeError(f"{file}: dates differ from the truth's")
        series[label] = _referenced(mp_disp, ref)
    vels = {label: velocity_of(dates, d) for label, d in series.items()}
    v_app = read_h5(app_dir / "velocity.h5", "velocity").astype(np.float64)
    v_app -= v_app[ref]
    n_inv = read_h5(app_dir / "numInvIfgram.h5", "mask")
    mask_mp = read_h5(app_dir / "maskTempCoh.h5", "mask").astype(bool)

    common = truth["coherent"] & (n_inv > 0)
    for v in vels.values():
        common &= np.isfinite(v)
    own = {label: (e2e_mask.astype(bool) if label.startswith("mtinsar") else mask_mp)
           for label in series}  # fmt: skip
    own.update({label: mask for label, (_, mask) in like.items()})
    scores = {label: _score(series[label], vels[label], truth, common, own[label])
              for label in series}  # fmt: skip
    v_diff = v_app - truth["velocity"]
    scores["MintPy velocity.h5 (its own fit)"] = {
        "velocity_rmse_mm_yr_common": round(rms(v_diff[common]) * 1000, 3),
        "velocity_rmse_mm_yr_own_mask": round(
            rms(v_diff[mask_mp & truth["coherent"]]) * 1000, 3
        ),
        "coverage_own_mask": round(float((mask_mp & truth["coherent"]).sum()
                                         / truth["coherent"].sum()), 4),
    }  # fmt: skip
    result = {
        "machine": machine(),
        "scene": {"preset": args.preset, **cfg.model_dump()},
        "reference_yx": list(ref),
        "n_pixels_common": int(common.sum()),
        "n_pixels_coherent": int(truth["coherent"].sum()),
        "scores": scores,
        "timings": {
            **timings,
            "mintpy_smallbaselineApp": {k: app[k] for k in ("wall_s", "cpu_s", "peak_rss_mib")},
        },
        "mtinsar_inversion_report": json.loads((work / "inv.json").read_text()),
        "mtinsar_like_mintpy_configs": {name: cfg for name, (_, cfg) in LIKE_RUNS.items()},
    }
    update_results(_section(args.preset), result)
    for label, s in scores.items():
        print(f"{label:55s} {s}")
    print(f"results: {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
