"""Shared pieces of the benchmarks: scenes on disk, measured subprocesses, MintPy runs, results.

Every tool runs in its own subprocess, so each wall time and peak RSS belongs to one tool:
the peak resident set size comes from the kernel's rusage of that child (``os.wait4``),
i.e. the same number ``/usr/bin/time -v`` prints as "Maximum resident set size".
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MINTPY_VENV = HERE / ".venv-mintpy"
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "results.md"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "mtinsar-bench"
#: Independent looks of the simulator's coherence/noise model (SceneConfig.looks default).
LOOKS = 20


# --------------------------------------------------------------------------- processes


@dataclass
class Measured:
    """Wall time [s], CPU time (user + system, all threads) [s], peak RSS [MiB] and exit
    status of one subprocess."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    returncode: int
    log: Path

    def numbers(self) -> dict[str, float]:
        return {"wall_s": self.wall_s, "cpu_s": self.cpu_s, "peak_rss_mib": self.peak_rss_mib}

    def check(self, what: str) -> Measured:
        if self.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} failed (exit {self.returncode}); log {self.log}:\n{tail}")
        return self


def measure(cmd: list[str], log: Path, cwd: Path | None = None) -> Measured:
    """Run `cmd`, output to `log`; wall time, and the child's CPU time and peak RSS from the
    kernel's rusage (CPU time is less disturbed than wall time by other jobs on the machine)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above: tell Popen
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(
        round(wall, 2), round(cpu, 2), round(usage.ru_maxrss / 1024, 1), proc.returncode, log
    )


def mintpy_bin(name: str) -> str:
    path = MINTPY_VENV / "bin" / name
    if not path.exists():
        raise SystemExit(f"{path} missing: run `bash benchmarks/setup_mintpy.sh` first")
    return str(path)


def machine() -> dict:
    """What the numbers were measured on."""
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1_5_15": [round(v, 2) for v in load],
        "mintpy": _mintpy_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git": _git_state(),
    }


def _git_state() -> str:
    """Commit of the measured code, with '+N changed files' when the tree is not clean."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    return f"{head} + {len(dirty)} changed files" if dirty else head


def _mintpy_version() -> str:
    try:
        out = subprocess.run(
            [str(MINTPY_VENV / "bin" / "python"), "-c", "import mintpy; print(mintpy.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not installed"


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class SceneFiles:
    """A simulated scene on disk: LiCSAR frame (with truth) and its MintPy export."""

    licsar: Path
    mintpy_inputs: Path
    ref_yx: tuple[int, int]


def prepare_scene(name: str, config, work: Path, mintpy: bool = True) -> SceneFiles:  # noqa: ANN001
    """Simulate `config` into `work/name` (LiCSAR layout + MintPy export), reusing a match.

    The MintPy files are exported from the stack exactly as mtinsar reads the LiCSAR frame
    (uint8-quantised coherence included), so both tools see identical inputs. The reference
    pixel is the simulator's (a coherent, stable pixel valid in every pair).
    """
    from mtinsar.config import RunConfig
    from mtinsar.io.mintpy import write_mintpy
    from mtinsar.simulate import load_truth, simulate_scene, write_licsar
    from mtinsar.workflows.pipeline import load_input

    folder = work / name
    wanted = config.model_dump_json(indent=2) + "\n"
    licsar, inputs = folder / "frame", folder / "mintpy_inputs"
    stamp = folder / "done.json"
    if not (stamp.is_file() and (licsar / "scene.json").read_text() == wanted):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        # the truth cubes spilled to disk: the large scene's would take 3.6 GB of memory
        with tempfile.TemporaryDirectory(dir=folder) as spill:
            write_licsar(simulate_scene(config, spill_dir=Path(spill)), licsar)
        print(f"[{name}] simulated and wrote LiCSAR frame in {time.perf_counter() - t0:.0f} s")
        truth = load_truth(licsar)
        ref = (int(truth.attrs["ref_y"]), int(truth.attrs["ref_x"]))
        if not mintpy:
            stamp.write_text(json.dumps({"ref_yx": ref}))
            return SceneFiles(licsar, inputs, ref)
        stack = load_input(licsar, RunConfig())
        unw_ref = stack["unw"].values[:, ref[0], ref[1]]
        if not np.isfinite(unw_ref).all():
            raise RuntimeError(f"reference pixel {ref} has no-data pairs")
        write_mintpy(
            stack,
            inputs,
            reference=ref,
            looks=LOOKS,
            slant_range=float(truth.attrs["slant_range_m"]),
        )
        del stack
        stamp.write_text(json.dumps({"ref_yx": ref}))
        print(f"[{name}] exported MintPy inputs in {time.perf_counter() - t0:.0f} s total")
    ref = tuple(json.loads(stamp.read_text())["ref_yx"])
    return SceneFiles(licsar, inputs, ref)  # type: ignore[arg-type]


def fresh_mintpy_dir(scene: SceneFiles, target: Path, link: bool) -> Path:
    """A MintPy work dir with inputs/ holding the scene's files (copied when MintPy edits
    them in place, as smallbaselineApp's modify_network/reference_point steps do)."""
    shutil.rmtree(target, ignore_errors=True)
    (target / "inputs").mkdir(parents=True)
    for file in scene.mintpy_inputs.iterdir():
        if link:
            (target / "inputs" / file.name).symlink_to(file)
        else:
            shutil.copy2(file, target / "inputs" / file.name)
    return target


# --------------------------------------------------------------------------- MintPy runs


def smallbaseline_template(ref_yx: tuple[int, int], workers: int) -> str:
    """smallbaselineApp options: no weather-model troposphere (needs downloads), no
    geocoding (already geocoded), no plots; everything else MintPy's defaults, with the
    coherence weighting ('var') and the reference pixel stated explicitly."""
    cluster = "local" if workers > 1 else "no"
    return "\n".join(
        [
            f"mintpy.compute.cluster = {cluster}",
            f"mintpy.compute.numWorker = {workers}",
            "mintpy.network.coherenceBased = no",
            f"mintpy.reference.yx = {ref_yx[0]},{ref_yx[1]}",
            "mintpy.troposphericDelay.method = no",
            "mintpy.deramp = no",
            "mintpy.topographicResidual = yes",
            "mintpy.networkInversion.weightFunc = var",
            "mintpy.geocode = no",
            "mintpy.save.kmz = no",
            "mintpy.plot = no",
            "",
        ]
    )


def run_smallbaseline_app(scene: SceneFiles, work: Path, workers: int = 1) -> dict:
    """MintPy's smallbaselineApp from the exported inputs/ (load_data skipped), measured.

    load_data is skipped by starting at modify_network: the HDF5 files it would write are
    already in inputs/. quick_overview runs as its first half only (temporal_average): its
    second half plots a histogram that fails on stacks without any triplet of non-zero
    integer closure ambiguity (MintPy 1.6.x, `bins` = 0), and only feeds a diagnostic map.
    """
    app = fresh_mintpy_dir(scene, work, link=False)
    (app / "bench.cfg").write_text(smallbaseline_template(scene.ref_yx, workers))
    steps = [
        [mintpy_bin("smallbaselineApp.py"), "bench.cfg", "--start", "modify_network", "--end",
         "reference_point"],
        [mintpy_bin("temporal_average.py"), "inputs/ifgramStack.h5", "--dataset", "unwrapPhase",
         "-o", "avgPhaseVelocity.h5", "--update"],
        [mintpy_bin("smallbaselineApp.py"), "bench.cfg", "--start", "correct_unwrap_error"],
    ]  # fmt: skip
    wall, cpu, peak = 0.0, 0.0, 0.0
    for k, cmd in enumerate(steps):
        m = measure(cmd, app / f"step{k}.log", cwd=app).check("smallbaselineApp")
        wall, cpu, peak = wall + m.wall_s, cpu + m.cpu_s, max(peak, m.peak_rss_mib)
    numbers = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": peak}
    (app / "measured.json").write_text(json.dumps(numbers))  # for accuracy.py --reuse-mintpy
    return {**numbers, "dir": str(app)}


def run_ifgram_inversion(scene: SceneFiles, work: Path, workers: int = 1) -> dict:
    """MintPy's ifgram_inversion CLI on the exported stack, coherence weighting 'var'."""
    inv = fresh_mintpy_dir(scene, work, link=True)
    cmd = [mintpy_bin("ifgram_inversion.py"), "inputs/ifgramStack.h5", "-w", "var"]
    if workers > 1:
        cmd += ["--cluster", "local", "--num-worker", str(workers)]
    m = measure(cmd, inv / "ifgram_inversion.log", cwd=inv).check("ifgram_inversion")
    return {**m.numbers(), "dir": str(inv)}


def read_mintpy_timeseries(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(dates datetime64[D], displacement (n_dates, y, x) [m], + towards the satellite)."""
    with h5py.File(path, "r") as f:
        dates = np.array(
            [np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:8]}") for d in f["date"][()].astype(str)]
        )
        return dates, f["timeseries"][()]


def read_h5(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


# --------------------------------------------------------------------------- scoring


def velocity_of(dates: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Linear LOS velocity [m/yr] of a (n_dates, y, x) series, the fit mtinsar uses."""
    from mtinsar.analysis.model import linear_velocity
    from mtinsar.conventions import years_since

    t = years_since(dates, dates[0])
    v, _ = linear_velocity(t, disp.reshape(disp.shape[0], -1).astype(np.float64))
    return v.reshape(disp.shape[1:])


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (what can be used without swapping)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else float("nan")


# --------------------------------------------------------------------------- results


def update_results(section: str, data: dict) -> dict:
    """Merge `data` under `section` into results.json and re-render results.md."""
    from report import render  # benchmarks/report.py, beside this file

    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {}
    results[section] = data
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    RESULTS_MD.write_text(render(results))
    return results


def python() -> str:
    """The interpreter running the benchmark (the main venv's)."""
    return sys.executable
