"""`mtinsar worker`: claims queued jobs and runs each in a child process under a lease.

The child does the work; the worker renews the job's lease and records its progress
every few seconds, and kills the child when the job is cancelled or taken over. A worker
that dies stops renewing, so after `lease_seconds` another worker claims the job again
(queue.claim); the job is never lost. CPU-seconds (the child's and its children's) are
charged to the job's owner.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import socket
import threading
import traceback
from pathlib import Path
from typing import Any

from mtinsar.errors import MtinsarError
from mtinsar.service import db, queue
from mtinsar.service.processes import PROCESSES, RESULT
from mtinsar.service.settings import ServiceConfig
from mtinsar.workflows.checkpoint import work_folder

log = logging.getLogger(__name__)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def work(
    config: ServiceConfig,
    name: str | None = None,
    stop: threading.Event | None = None,
    max_jobs: int | None = None,
) -> int:
    """Run queued jobs until `stop` is set or `max_jobs` are done; the number run."""
    name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    stop = stop or threading.Event()
    engine = db.connect(config.url)
    factory = db.sessions(engine)
    done = 0
    try:
        while not stop.is_set() and (max_jobs is None or done < max_jobs):
            job = queue.claim(factory, name, config.lease_seconds, config.max_attempts)
            if job is None:
                stop.wait(config.poll_seconds)
                continue
            log.info(
                "worker %s: job %s (%s), attempt %d", name, job.id, job.process_id, job.attempts
            )
            _run(job, factory, name, config, stop)
            done += 1
    finally:
        engine.dispose()
    return done


def _run(
    job: db.Job, factory: Any, name: str, config: ServiceConfig, stop: threading.Event
) -> None:
    job_dir = config.job_dir(job.id)
    _clear_leftovers(job_dir)
    context = mp.get_context("spawn")  # a fresh interpreter: no locks or threads inherited
    progress = context.Value("i", 0)
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_child,
        args=(
            job.process_id,
            job.inputs,
            str(job_dir),
            config.model_dump_json(),
            progress,
            sender,
            os.getpid(),
        ),
        name=f"mtinsar-job-{job.id}",
    )
    child.start()
    sender.close()
    cpu, outcome = 0.0, None
    beat = min(config.lease_seconds / 3, 10.0)
    while outcome is None:
        if receiver.poll(beat):
            outcome = _receive(receiver)
            break
        cpu = max(cpu, _cpu_seconds(child.pid))
        if not child.is_alive():
            outcome = ("error", f"the job's process died (exit code {child.exitcode})", cpu)
        elif stop.is_set():
            _kill(child)
            queue.release(factory, job.id, name)
            log.info("worker %s stopping: job %s handed back to the queue", name, job.id)
            return
        elif not queue.heartbeat(factory, job.id, name, config.lease_seconds, progress.value):
            _kill(child)  # cancelled by its owner, or another worker took it over
            outcome = ("error", "stopped", cpu)
    child.join()
    kind, payload, child_cpu = outcome
    if kind == "ok":
        queue.finish(factory, job.id, name, db.SUCCESSFUL, "finished", child_cpu, payload)
    else:
        queue.finish(factory, job.id, name, db.FAILED, f"failed: {payload}", max(cpu, child_cpu))
    with factory() as session:
        if session.get(db.Job, job.id).status != db.RUNNING:  # ended, not taken over
            shutil.rmtree(work_folder(job_dir / RESULT), ignore_errors=True)
    log.info("worker %s: job %s %s", name, job.id, kind)


def _receive(receiver: Any) -> tuple[str, Any, float]:
    try:
        return receiver.recv()
    except EOFError:
        return ("error", "the job's process ended without a result", 0.0)


def _child(
    process_id: str,
    inputs: dict[str, Any],
    job_dir: str,
    config_json: str,
    progress: Any,
    sender: Any,
    parent: int,
) -> None:
    """Run one job (in the child process) and send (kind, outputs or message, CPU-seconds)."""
    import resource

    _die_with_parent(parent)
    config = ServiceConfig.model_validate_json(config_json)
    folder = Path(job_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "job.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)

    def report(percent: int) -> None:
        progress.value = int(percent)

    try:
        outputs = PROCESSES[process_id].execute(inputs, folder, config, report)
        outcome: tuple[str, Any] = ("ok", outputs)
    except MtinsarError as exc:
        outcome = ("error", str(exc))
    except Exception as exc:  # anything else is a bug: keep the traceback in job.log
        logging.getLogger(__name__).error("job failed\n%s", traceback.format_exc())
        outcome = ("error", f"internal error ({type(exc).__name__}: {exc}); see job.log")
    used = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    sender.send((*outcome, used))
    sender.close()


def _die_with_parent(parent: int) -> None:
    """Have Linux kill this process when its worker `parent` dies (SIGKILL leaves no time to
    clean up); exit now if it died already, while this interpreter was starting (the signal
    is armed only from here on).

    Otherwise an orphan would go on writing the job's folder while another worker reruns it.
    """
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the lease still re-queues the job
        return
    if os.getppid() != parent:  # reparented: the worker is gone
        os._exit(1)


def _cpu_seconds(pid: int | None) -> float:
    """CPU-seconds used so far by process `pid` (0 when it is gone); Linux /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 of stat; fields[0] here is field 3
    return sum(int(v) for v in fields[11:15]) / _CLOCK_TICKS


def _kill(child: Any) -> None:
    child.terminate()
    child.join(5)
    if child.is_alive():
        child.kill()
        child.join()


def _clear_leftovers(job_dir: Path) -> None:
    """Remove the half-written result folders a killed attempt left (results are swapped in
    whole); its `.result.work` checkpoints stay, so that the next attempt resumes there."""
    for path in job_dir.glob(".*.tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
