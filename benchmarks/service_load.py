"""Service under load: concurrent status/result requests while jobs run; a worker killed.

Starts a throwaway PostgreSQL server, `mtinsar serve` and three `mtinsar worker`s (real
processes on loopback), submits 4 sbas jobs on simulated scenes and, while they run, fires
waves of 200 concurrent GET requests (job status, job list, results) with httpx. One
worker is SIGKILLed in the middle of a job and a fourth one started: its job must still
finish. Writes benchmarks/service_load.json and benchmarks/service_load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from mtinsar.service import db, devdb
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar

HERE = Path(__file__).resolve().parent
MTINSAR = [sys.executable, "-m", "mtinsar"]
FINISHED = ("successful", "failed", "dismissed")


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


async def _wave(base: str, key: str, job_ids: list[str], n: int) -> tuple[list[float], int]:
    """`n` concurrent GETs; their latencies [s] and the number of errors (5xx/transport)."""
    paths = []
    for i in range(n):
        job = job_ids[i % len(job_ids)]
        paths.append(("/jobs", f"/jobs/{job}", f"/jobs/{job}/results")[i % 3])
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def one(path: str) -> tuple[float, bool]:
            start = time.perf_counter()
            try:
                r = await client.get(path, timeout=60)
                # a result asked for before its job is done is a 404 by the standard, not a fault
                bad = r.status_code >= 500 or (
                    r.status_code == 404 and "result-not-ready" not in r.text
                )
            except httpx.TransportError:
                bad = True
            return time.perf_counter() - start, bad

        done = await asyncio.gather(*(one(p) for p in paths))
    return [t for t, _ in done], sum(bad for _, bad in done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="Concurrent requests a wave.")
    parser.add_argument("--size", type=int, nargs=3, default=(150, 200, 40), help="ny nx dates")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mtinsar-service-bench-"))
    inbox, data = work / "inbox", work / "service"
    ny, nx, n_dates = args.size
    scenes = [
        write_licsar(
            simulate_scene(SceneConfig(ny=ny, nx=nx, n_dates=n_dates, seed=i)), inbox / f"s{i}"
        )
        for i in range(4)
    ]
    port = devdb.free_port()
    base = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    with devdb.postgres_server() as server:
        url = devdb.create_database(server)
        common = ["--data", str(data), "--db", url]
        key = subprocess.run(
            [*MTINSAR, "users", "add", "bench", "--role", "scientist", *common],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        log = open(work / "service.log", "w")  # noqa: SIM115 (closed at the end)
        serve = [*MTINSAR, "serve", *common, "--port", str(port), "--source-root", str(inbox)]
        procs.append(subprocess.Popen(serve, stdout=log, stderr=log))
        worker = [*MTINSAR, "worker", *common, "--lease", "5", "--source-root", str(inbox)]
        try:
            _wait_http(f"{base}/conformance")
            workers = [subprocess.Popen(worker, stdout=log, stderr=log) for _ in range(3)]
            procs += workers
            headers = {"Authorization": f"Bearer {key}", "Prefer": "respond-async"}
            job_ids = []
            for scene in scenes:
                body = {"inputs": {"source": str(scene)}}
                r = httpx.post(f"{base}/processes/sbas/execution", json=body, headers=headers)
                r.raise_for_status()
                job_ids.append(r.json()["jobID"])
            latencies, errors, waves, killed = [], 0, 0, False
            start = time.monotonic()
            while True:
                statuses = {
                    j: httpx.get(f"{base}/jobs/{j}", headers=headers, timeout=60).json()
                    for j in job_ids
                }
                if all(
                    s["status"] in ("successful", "failed", "dismissed") for s in statuses.values()
                ):
                    break
                if not killed:
                    running = [j for j, s in statuses.items() if s["status"] == "running"]
                    if running and time.monotonic() - start > 5:
                        os.kill(workers[0].pid, signal.SIGKILL)  # whichever job it holds
                        killed = True
                        procs.append(subprocess.Popen(worker, stdout=log, stderr=log))
                t, e = asyncio.run(_wave(base, key, job_ids, args.requests))
                latencies += t
                errors += e
                waves += 1
                if time.monotonic() - start > 1800:
                    raise RuntimeError("jobs did not finish in 30 min")
            wall = time.monotonic() - start
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()
        final = [statuses[j] for j in job_ids]
        engine = db.connect(url)
        with db.sessions(engine)() as session:
            attempts = [session.get(db.Job, j).attempts for j in job_ids]
        engine.dispose()
    lat_ms = np.array(latencies) * 1000
    result = {
        "requests": int(lat_ms.size),
        "concurrent": args.requests,
        "waves": waves,
        "errors": int(errors),
        "latency_ms": {
            "p50": round(float(np.percentile(lat_ms, 50)), 1),
            "p95": round(float(np.percentile(lat_ms, 95)), 1),
            "max": round(float(lat_ms.max()), 1),
        },
        "jobs": [s["status"] for s in final],
        "jobs_wall_s": round(wall, 1),
        "scene": {"ny": ny, "nx": nx, "n_dates": n_dates},
        "attempts": attempts,
    }
    (HERE / "service_load.json").write_text(json.dumps(result, indent=2))
    (HERE / "service_load.md").write_text(_markdown(result))
    print(_markdown(result))
    if errors or any(s != "successful" for s in result["jobs"]) or max(attempts) < 2:
        sys.exit(1)


def _markdown(r: dict) -> str:
    lat = r["latency_ms"]
    return (
        "# Service load (benchmarks/service_load.py)\n\n"
        f"{r['waves']} waves of {r['concurrent']} concurrent GET requests (job status, job "
        f"list, results) while 4 sbas jobs ran on 3 workers ({r['scene']['ny']}x"
        f"{r['scene']['nx']} px, {r['scene']['n_dates']} dates each), PostgreSQL; one worker "
        "SIGKILLed mid-job and a fresh one started.\n\n"
        "| requests | errors | p50 [ms] | p95 [ms] | max [ms] | jobs | attempts | jobs wall [s] |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {r['requests']} | {r['errors']} | {lat['p50']} | {lat['p95']} | {lat['max']} | "
        f"{', '.join(r['jobs'])} | {r['attempts']} | {r['jobs_wall_s']} |\n"
    )


if __name__ == "__main__":
    main()
