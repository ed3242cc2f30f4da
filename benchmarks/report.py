"""Render benchmarks/results.json as the markdown tables of benchmarks/results.md."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _med(summary: dict, key: str) -> Any:
    return summary.get(key, {}).get("median")


def _all(summary: dict, key: str, digits: int = 2) -> str:
    values = summary.get(key, {}).get("all", [])
    return ", ".join(_fmt(v, digits) for v in values) if len(values) > 1 else ""


def _row(s: dict, label: str, mt: str, mp: str | None, ratio: str | None, digits: int = 2) -> str:
    cells = [
        label,
        _fmt(_med(s, mt), digits),
        _fmt(_med(s, mp), digits) if mp else "",
        _fmt(_med(s, ratio), 4) if ratio else "",
        _all(s, ratio, 4) if ratio else _all(s, mt, digits),
    ]
    return "| " + " | ".join(cells) + " |"


def _machine(m: dict) -> str:
    return (
        f"_{m.get('date')} · {m.get('cpus')} CPUs · Python {m.get('python')} · MintPy "
        f"{m.get('mintpy')} · code {m.get('git', '?')} · load average at start "
        f"{m.get('load_avg_1_5_15')}_"
    )


def _speed(speed: dict) -> list[str]:
    s = speed["summary"]
    sc = speed["scene"]
    r0 = speed["rounds"][0]
    inv = r0["mtinsar_inversion"]
    n_rounds = len(speed["rounds"])
    lines = [
        f"## Speed: {sc['preset']} scene",
        "",
        _machine(speed["machine"]),
        "",
        f"Scene: {sc['ny']} x {sc['nx']} px, {inv['n_dates']} dates, {inv['n_pairs']} pairs "
        f"(`SceneConfig.preset('{sc['preset']}')`, all nuisances on). MintPy workers: "
        f"{speed['mintpy_workers']} (1 = MintPy's default serial run). Medians over "
        f"{n_rounds} round(s); every round's value in the last column when more than one.",
        "",
        "| measure | mtinsar | MintPy | mtinsar / MintPy | ratio in each round |",
        "|---|---:|---:|---:|---|",
        _row(
            s,
            "network inversion, coherence-weighted: process wall [s]",
            "mtinsar_inversion_process_wall_s",
            "mintpy_inversion_wall_s",
            "inversion_ratio_process",
        ),
        _row(
            s,
            "network inversion: process CPU, user+sys [s]",
            "mtinsar_inversion_process_cpu_s",
            "mintpy_inversion_cpu_s",
            "inversion_ratio_cpu",
        ),
        _row(
            s,
            "network inversion: mtinsar kernel only vs MintPy process, wall [s]",
            "mtinsar_inversion_kernel_s",
            "mintpy_inversion_wall_s",
            "inversion_ratio_kernel",
        ),
        _row(
            s,
            "inversion throughput [pixel·pairs/s] (mtinsar: kernel)",
            "mtinsar_inversion_throughput",
            "mintpy_inversion_throughput",
            None,
            0,
        ),
        _row(
            s,
            "inversion peak RSS [MiB]",
            "mtinsar_inversion_peak_rss_mib",
            "mintpy_inversion_peak_rss_mib",
            None,
            0,
        ),
        _row(
            s,
            "inversion velocity RMS difference mtinsar − MintPy [mm/yr]",
            "inversion_velocity_rms_diff_mm_yr",
            None,
            None,
            4,
        ),
        _row(
            s,
            "end to end, wall [s] (mtinsar load_input + run_sbas + write_results; "
            "MintPy smallbaselineApp)",
            "mtinsar_e2e_wall_s",
            "mintpy_app_wall_s",
            "e2e_ratio",
        ),
        _row(s, "end to end, CPU [s]", "mtinsar_e2e_cpu_s", "mintpy_app_cpu_s", "e2e_ratio_cpu"),
        _row(
            s,
            "end to end, peak RSS [MiB]",
            "mtinsar_e2e_peak_rss_mib",
            "mintpy_app_peak_rss_mib",
            None,
            0,
        ),
        _row(
            s,
            "mtinsar end to end via a Zarr store (ingest + run from the store), wall [s]",
            "mtinsar_store_e2e_wall_s",
            None,
            None,
        ),
        _row(
            s, "mtinsar end to end via a Zarr store, CPU [s]", "mtinsar_store_e2e_cpu_s", None, None
        ),
        _row(
            s,
            "mtinsar end to end via a Zarr store, peak RSS [MiB]",
            "mtinsar_store_e2e_peak_rss_mib",
            None,
            None,
            0,
        ),
        _row(
            s,
            "end to end velocity RMS difference [mm/yr] (not like for like, see README)",
            "e2e_velocity_rms_diff_mm_yr",
            None,
            None,
            3,
        ),
        "",
        "mtinsar end to end per stage (round 1; peak RSS = largest resident set seen during "
        "the stage, sampled every 5 ms):",
        "",
        "| stage | wall [s] | CPU [s] | peak RSS [MiB] |",
        "|---|---:|---:|---:|",
    ]
    e2e = r0["mtinsar_e2e"]
    lines += _stage_rows(e2e)
    if "mtinsar_e2e_via_store" in r0:
        lines += [
            "",
            "mtinsar end to end via a Zarr stack store (round 1): the frame is ingested once "
            "(`mtinsar ingest`), the run reads the store:",
            "",
            "| stage | wall [s] | CPU [s] | peak RSS [MiB] |",
            "|---|---:|---:|---:|",
            *_stage_rows(r0["mtinsar_e2e_via_store"]),
        ]
    lines += [
        "",
        "mtinsar weighted inversion process (round 1):",
        "",
        "| stage | wall [s] | CPU [s] | peak RSS [MiB] |",
        "|---|---:|---:|---:|",
        *_stage_rows(inv),
    ]
    lines.append("")
    return lines


def _stage_rows(report: dict) -> list[str]:
    rows = []
    for name, st in report["stages"].items():
        rows.append(
            f"| {name} | {_fmt(st['wall_s'])} | {_fmt(st.get('cpu_s'))} | "
            f"{_fmt(st['peak_rss_mib'], 0)} |"
        )
    for name, sec in report.get("run_sbas_substages_s", {}).items():
        rows.append(f"| &nbsp;&nbsp;run_sbas: {name} | {_fmt(float(sec))} | | |")
    p = report["process"]
    rows.append(
        f"| whole process (incl. start-up, imports) | {_fmt(p['wall_s'])} | "
        f"{_fmt(p.get('cpu_s'))} | {_fmt(p['peak_rss_mib'], 0)} |"
    )
    return rows


def _accuracy(acc: dict) -> list[str]:
    sc = acc["scene"]
    lines = [
        f"## Accuracy against the simulator's truth: {sc['preset']} scene, troposphere off",
        "",
        _machine(acc["machine"]),
        "",
        f"Scene: {sc['ny']} x {sc['nx']} px, {sc['n_dates']} dates; reference pixel "
        f"{tuple(acc['reference_yx'])} for both tools; 'common' = the "
        f"{acc['n_pixels_common']:,} of {acc['n_pixels_coherent']:,} coherent pixels every "
        "variant estimated; 'own mask' = each tool's reliability mask (mtinsar: temporal "
        "coherence >= 0.7 and connected; MintPy: maskTempCoh.h5).",
        "",
        "| variant | velocity RMSE [mm/yr], common | displacement RMSE [mm], common "
        "| velocity RMSE [mm/yr], own mask | coverage of coherent px, own mask |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, s in acc["scores"].items():
        lines.append(
            f"| {label} | {_fmt(s.get('velocity_rmse_mm_yr_common'), 3)} | "
            f"{_fmt(s.get('displacement_rmse_mm_common'), 3)} | "
            f"{_fmt(s.get('velocity_rmse_mm_yr_own_mask'), 3)} | "
            f"{_fmt(s.get('coverage_own_mask'), 4)} |"
        )
    t = acc["timings"]
    lines += [
        "",
        f"Wall time / peak RSS in this run: mtinsar end to end "
        f"{_fmt(t['mtinsar_e2e']['wall_s'])} s / {_fmt(t['mtinsar_e2e']['peak_rss_mib'], 0)} "
        f"MiB{_like_timing(t)}; mtinsar weighted inversion "
        f"{_fmt(t['mtinsar_inversion']['wall_s'])} s / "
        f"{_fmt(t['mtinsar_inversion']['peak_rss_mib'], 0)} MiB; MintPy smallbaselineApp "
        f"{_fmt(t['mintpy_smallbaselineApp']['wall_s'])} s / "
        f"{_fmt(t['mintpy_smallbaselineApp']['peak_rss_mib'], 0)} MiB.",
        "",
    ]
    return lines


def _like_timing(timings: dict) -> str:
    """The like-MintPy runs' wall time and peak RSS (runs before these variants have none)."""
    return "".join(
        f"; {name.replace('_', ' ')} {_fmt(t['wall_s'])} s / {_fmt(t['peak_rss_mib'], 0)} MiB"
        for name, t in timings.items()
        if name.startswith("mtinsar_like_mintpy")
    )


def _large(large: dict) -> list[str]:
    head = ["## Speed: large scene (mtinsar only)", "", _machine(large["machine"]), ""]
    if "mtinsar_run" not in large:
        return [
            *head,
            f"Skipped: {large.get('skipped')} (available {large.get('available_gib')} GiB).",
            "",
        ]
    run = large["mtinsar_run"]
    peak = run["process"]["peak_rss_mib"]
    target = large["target_peak_rss_gib"]
    return [
        *head,
        f"Scene: {run['shape'][0]} x {run['shape'][1]} px, {run['n_dates']} dates, "
        f"{run['n_pairs']} pairs; `mtinsar run FRAME OUT` with the default configuration "
        "(threads scheduler, 256-px chunks), time series streamed to Zarr.",
        "",
        "| stage | wall [s] | CPU [s] | peak RSS [MiB] |",
        "|---|---:|---:|---:|",
        *_stage_rows(run),
        "",
        f"Peak RSS {_fmt(peak / 1024)} GiB against the target of {_fmt(target, 1)} GiB: "
        f"{'met' if large['meets_target'] else 'NOT met'}.",
        "",
    ]


def _nrt(nrt: dict) -> list[str]:
    sc, full = nrt["scene"], nrt["full_rerun"]
    timed = nrt.get("full_rerun_walls_s", [])
    walls = f" (the faster of {', '.join(_fmt(w) for w in timed)} s)" if len(timed) > 1 else ""
    met = nrt.get("met", {})

    def ok(key: str) -> str:
        return "met" if met.get(key) else "NOT met"

    lines = [
        f"## Near-real-time update vs full re-run: {sc['preset']} scene",
        "",
        _machine(nrt["machine"]),
        "",
        f"Scene: {sc['ny']} x {sc['nx']} px, {nrt['n_dates']} dates; `mtinsar run` on all but "
        f"the last {nrt['withheld']} ({_fmt(nrt['first_run']['wall_s'])} s), then one "
        "`mtinsar update` per new date, then `mtinsar run` on all dates with the same "
        f"reference point (full re-run: {_fmt(full['wall_s'])} s wall{walls}, "
        f"{_fmt(full['cpu_s'])} s CPU). Each step is its own process; wall time includes "
        "interpreter start-up and, for an update, writing the new version's store; compute "
        "is the update's own time (update.json); resident is the wall time less the "
        "interpreter and imports every process pays first "
        f"({_fmt(nrt['imports']['wall_s']) if 'imports' in nrt else 'n/a'} s), i.e. what a "
        "resident `mtinsar watch` pays per update; in one process: the same updates made "
        "one after the other by one Python process after `workflow.warm_up`, as `mtinsar "
        "watch` makes them (median of the rounds timed).",
        "",
        "| update | date | wall [s] | CPU [s] | peak RSS [MiB] | compute [s] | wall / full "
        "re-run | resident / full re-run | in one process [s] | in one process / full "
        "re-run | compute / full re-run |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, u in enumerate(nrt["updates"], start=1):
        lines.append(
            f"| {k} | {u['date']} | {_fmt(u['wall_s'])} | {_fmt(u['cpu_s'])} | "
            f"{_fmt(u['peak_rss_mib'], 0)} | {_fmt(u['compute_s'])} | "
            f"{u['fraction_of_full_rerun']:.1%} | "
            f"{u.get('resident_fraction_of_full_rerun', float('nan')):.1%} | "
            f"{_fmt(u.get('in_process_s', float('nan')))} | "
            f"{u.get('in_process_fraction_of_full_rerun', float('nan')):.1%} | "
            f"{u['compute_fraction_of_full_rerun']:.1%} |"
        )
    target = nrt["targets"]
    lines += [
        "",
        f"Largest update / full re-run: **{nrt['max_update_fraction']:.1%}** as a process, "
        f"**{nrt.get('max_resident_update_fraction', float('nan')):.1%}** resident, "
        f"**{nrt.get('max_in_process_update_fraction', float('nan')):.1%}** in one process "
        f"(target <= {target['update_fraction']:.0%}: {ok('update_fraction_in_process')} in "
        f"one process, as `mtinsar watch` makes updates; {ok('update_fraction')} as separate "
        "processes). Velocity after the "
        f"last update vs the full re-run: RMS difference **"
        f"{_fmt(nrt['velocity_rms_diff_mm_yr'], 3)} mm/yr** over "
        f"{_fmt(nrt['n_pixels_compared'])} pixels reliable in both (target <= "
        f"{target['velocity_rms_mm_yr']} mm/yr: {ok('velocity_rms')}).",
        "",
    ]
    return lines


def _backends(b: dict) -> list[str]:
    rows = [
        f"| {name} | {_fmt(r['wall_s'])} | {_fmt(r['throughput_pixel_pairs_per_s'], 0)} |"
        for name, r in b["backends"].items()
    ]
    return [
        "## Inversion backends: numpy against JAX",
        "",
        _machine(b["machine"]),
        "",
        f"{_fmt(b['n_pixels'], 0)} pixels, {b['n_dates']} dates, {b['n_pairs']} pairs, "
        f"coherence-like random weights (benchmarks/backends.py); JAX on `{b['jax_device']}`"
        " (a CPU device says only that the backend works, not how fast a GPU is).",
        "",
        "| backend | wall [s] | throughput [pixel·pairs/s] |",
        "|---|---:|---:|",
        *rows,
        "",
        f"JAX / numpy time: {b['jax_over_numpy_time']}; largest phase difference "
        f"{b['max_abs_phase_diff_rad']:.1e} rad.",
        "",
    ]


def render(results: dict) -> str:
    lines = [
        "# mtinsar benchmark results",
        "",
        "Written by `make bench` (benchmarks/speed.py, accuracy.py, nrt_update.py, "
        "backends.py); see benchmarks/README.md for what each number means. Times are "
        "wall-clock seconds on this machine, shared with other work: compare ratios from "
        "the same run.",
        "",
    ]
    for key, section in results.items():
        if key == "speed_large":
            lines += _large(section)
        elif key.startswith("speed"):
            lines += _speed(section)
        elif key.startswith("accuracy"):
            lines += _accuracy(section)
        elif key.startswith("nrt_update"):
            lines += _nrt(section)
        elif key == "backends":
            lines += _backends(section)
    return "\n".join(lines)
