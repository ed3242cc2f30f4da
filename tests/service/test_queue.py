"""The job queue on SQLite and PostgreSQL: claims, leases, quotas, cancelling."""

import threading
import time

import pytest
from sqlalchemy import select

from mtinsar.service import auth, db, queue
from mtinsar.service.db import Job


def _user(factory, name="ann", role="scientist", quota=None):
    with factory.begin() as s:
        user, key = auth.create_user(s, name, role, quota)
    return user, key


def test_migrations_are_idempotent(database_url):
    engine = db.connect(database_url)
    db.migrate(engine)  # a second upgrade on an up-to-date schema changes nothing
    with db.sessions(engine)() as s:
        assert s.scalars(select(Job)).all() == []
    engine.dispose()


def test_each_job_is_claimed_by_exactly_one_of_many_workers(factory):
    user, _ = _user(factory)
    with factory.begin() as s:
        ids = {queue.submit(s, user, "sbas", {"n": i}).id for i in range(12)}
    claimed: list[str] = []
    lock = threading.Lock()

    def work(name):
        while (job := queue.claim(factory, name, 60, 3)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # all claimed, none twice


def test_expired_lease_requeues_then_fails_after_max_attempts(factory):
    user, _ = _user(factory)
    with factory.begin() as s:
        job_id = queue.submit(s, user, "sbas", {}).id
    first = queue.claim(factory, "dead", lease_seconds=0.2, max_attempts=2)
    assert first.id == job_id and queue.claim(factory, "other", 0.2, 2) is None  # leased
    time.sleep(0.3)
    second = queue.claim(factory, "other", lease_seconds=0.2, max_attempts=2)
    assert second.id == job_id and second.attempts == 2 and second.worker == "other"
    assert not queue.heartbeat(factory, job_id, "dead", 60, 50)  # the old worker is told to stop
    time.sleep(0.3)
    assert queue.claim(factory, "third", 0.2, 2) is None
    with factory() as s:
        job = s.get(Job, job_id)
        assert job.status == db.FAILED and "lost 2 times" in job.message


def test_quota_refuses_new_jobs_once_spent(factory):
    user, _ = _user(factory, quota=10.0)
    with factory.begin() as s:
        job_id = queue.submit(s, user, "sbas", {}).id
    queue.claim(factory, "w", 60, 3)
    queue.finish(factory, job_id, "w", db.SUCCESSFUL, "done", cpu_seconds=12.5)
    with factory.begin() as s:
        user = s.get(db.User, user.id)
        assert user.cpu_seconds_used == pytest.approx(12.5)
        with pytest.raises(queue.QuotaExceeded, match="ann.*10 CPU-seconds"):
            queue.submit(s, user, "sbas", {})


def test_cancel_queued_and_running_jobs(factory):
    user, _ = _user(factory)
    with factory.begin() as s:
        queued = queue.submit(s, user, "sbas", {"a": 1})
        running = queue.submit(s, user, "sbas", {"a": 2})
    queue.claim(factory, "w", 60, 3)  # oldest first: `queued` is the one claimed
    with factory.begin() as s:
        queue.cancel(s, s.get(Job, queued.id))  # running now: flagged
        queue.cancel(s, s.get(Job, running.id))  # still queued: dismissed at once
    assert not queue.heartbeat(factory, queued.id, "w", 60, 10)
    queue.finish(factory, queued.id, "w", db.FAILED, "killed", cpu_seconds=1.0)
    with factory() as s:
        assert s.get(Job, queued.id).status == db.DISMISSED
        assert s.get(Job, running.id).status == db.DISMISSED


def test_keys_are_stored_hashed_and_revocable(factory):
    user, key = _user(factory, role="viewer")
    with factory.begin() as s:
        stored = s.scalars(select(db.ApiKey)).one()
        assert key not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
        assert auth.authenticate(s, key).name == "ann"
        assert auth.authenticate(s, key + "x") is None
        assert auth.revoke_keys(s, s.get(db.User, user.id)) == 1
    with factory() as s:
        assert auth.authenticate(s, key) is None


def test_unknown_role_and_duplicate_user_are_refused(factory):
    _user(factory)
    with factory.begin() as s, pytest.raises(auth.InputError, match="role 'boss'"):
        auth.create_user(s, "bob", "boss")
    with factory.begin() as s, pytest.raises(auth.InputError, match="exists already"):
        auth.create_user(s, "ann", "viewer")
