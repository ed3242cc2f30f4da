"""The job queue in the database: submit, claim under a lease, heartbeat, finish, cancel.

A worker claims the oldest queued job, or a running one whose lease expired (its worker
died), with `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL; the claim is then made by an
UPDATE guarded by the state it read, so two workers can never both win, on SQLite too.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mtinsar.service.db import (
    ACCEPTED,
    DISMISSED,
    FAILED,
    FINISHED,
    RUNNING,
    SUCCESSFUL,
    Job,
    User,
    utcnow,
)


class QuotaExceeded(Exception):
    """The user's CPU-second quota is spent."""


def quota_left(user: User) -> float | None:
    """CPU-seconds `user` may still spend (None: unlimited)."""
    if user.quota_cpu_seconds is None:
        return None
    return max(user.quota_cpu_seconds - user.cpu_seconds_used, 0.0)


def submit(
    session: Session,
    user: User,
    process_id: str,
    inputs: dict[str, Any],
    visibility: str = "private",
) -> Job:
    """Queue a job for `user`; refuses when their quota is spent."""
    left = quota_left(user)
    if left is not None and left <= 0:
        raise QuotaExceeded(
            f"user {user.name!r} has spent the quota of {user.quota_cpu_seconds:g} CPU-seconds "
            f"({user.cpu_seconds_used:.1f} used); ask an admin to raise it"
        )
    job = Job(
        id=uuid.uuid4().hex,
        owner_id=user.id,
        process_id=process_id,
        inputs=inputs,
        visibility=visibility,
        status=ACCEPTED,
    )
    session.add(job)
    session.flush()
    return job


def claim(
    factory: sessionmaker, worker: str, lease_seconds: float, max_attempts: int
) -> Job | None:
    """Claim the next job for `worker` (status running, lease set), or None if none waits.

    A job whose lease expired `max_attempts` times is failed instead of claimed again.
    """
    with factory.begin() as session:
        now = utcnow()
        claimable = or_(
            Job.status == ACCEPTED,
            (Job.status == RUNNING) & (Job.lease_expires_at < now),
        )
        query = (
            select(Job)
            .where(claimable, Job.cancel_requested.is_(False))
            .order_by(Job.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        job = session.scalar(query)
        if job is None:
            return None
        if job.attempts >= max_attempts:
            _fail_exhausted(session, job, now)
            return None
        won = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == job.status, Job.attempts == job.attempts)
            .values(
                status=RUNNING,
                worker=worker,
                attempts=job.attempts + 1,
                started_at=job.started_at or now,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                updated_at=now,
                message="running" if job.attempts == 0 else "re-queued after a lost worker",
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            return None
    with factory() as session:
        return session.get(Job, job.id)


def _fail_exhausted(session: Session, job: Job, now: dt.datetime) -> None:
    job.status, job.finished_at, job.updated_at = FAILED, now, now
    job.message = f"failed: its worker was lost {job.attempts} times"


def heartbeat(
    factory: sessionmaker, job_id: str, worker: str, lease_seconds: float, progress: int
) -> bool:
    """Extend the lease and record progress; False when the job must stop (cancelled/lost)."""
    with factory.begin() as session:
        now = utcnow()
        changed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker == worker, Job.status == RUNNING)
            .where(Job.cancel_requested.is_(False))
            .values(
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                progress=progress,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    return changed == 1


def finish(
    factory: sessionmaker,
    job_id: str,
    worker: str,
    status: str,
    message: str,
    cpu_seconds: float,
    outputs: dict[str, Any] | None = None,
) -> None:
    """Record the end of a job and charge its CPU-seconds to the owner."""
    with factory.begin() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            return
        job.cpu_seconds += cpu_seconds
        owner = session.get(User, job.owner_id, with_for_update=True)
        owner.cpu_seconds_used += cpu_seconds
        if job.worker != worker or job.status != RUNNING:
            return  # another worker took it over (this one was presumed dead): theirs to finish
        now = utcnow()
        if job.cancel_requested:
            status, message = DISMISSED, "dismissed: cancelled by its owner"
        job.status, job.message, job.outputs = status, message[:2000], outputs
        job.finished_at = job.updated_at = now
        job.lease_expires_at = None
        if status == SUCCESSFUL:
            job.progress = 100


def cancel(session: Session, job: Job) -> None:
    """Stop `job`: a queued one is dismissed at once, a running one when its worker notices."""
    if job.status in FINISHED:
        job.status = DISMISSED
    elif job.status == ACCEPTED:
        job.status, job.message = DISMISSED, "dismissed before it started"
        job.finished_at = utcnow()
    else:
        job.cancel_requested = True
        job.message = "cancelling"
    job.updated_at = utcnow()


def release(factory: sessionmaker, job_id: str, worker: str) -> None:
    """Hand a job back to the queue (its worker is shutting down); the attempt is not counted."""
    with factory.begin() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker == worker, Job.status == RUNNING)
            .values(
                status=ACCEPTED,
                worker=None,
                lease_expires_at=None,
                attempts=Job.attempts - 1,
                message="queued again: its worker stopped",
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
