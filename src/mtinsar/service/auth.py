"""Users, API keys and who may see or do what.

Roles: admin (everything, manages users), scientist (submits jobs, reads own/shared/public
ones), viewer (reads what is shared with them or public; never submits). A job is private
(owner and admins), shared (also the users named in its shares) or public (every user).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from mtinsar.errors import InputError
from mtinsar.service.db import ROLES, ApiKey, Job, User, utcnow

KEY_PREFIX = "mti_"


def hash_key(key: str) -> str:
    """The stored form of an API key (hex SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_user(
    session: Session, name: str, role: str, quota_cpu_seconds: float | None = None
) -> tuple[User, str]:
    """A new user and their first API key (the only time the key is seen in clear)."""
    if role not in ROLES:
        raise InputError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise InputError(f"user {name!r} exists already; choose another name")
    user = User(name=name, role=role, quota_cpu_seconds=quota_cpu_seconds)
    session.add(user)
    session.flush()
    return user, issue_key(session, user)


def issue_key(session: Session, user: User) -> str:
    """A new API key for `user`; stored hashed, returned in clear."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(user_id=user.id, prefix=key[:12], key_hash=hash_key(key)))
    session.flush()
    return key


def revoke_keys(session: Session, user: User) -> int:
    """Revoke every live key of `user`; the number revoked."""
    keys = [k for k in user.keys if k.revoked_at is None]
    for key in keys:
        key.revoked_at = utcnow()
    return len(keys)


def authenticate(session: Session, key: str | None) -> User | None:
    """The user owning the live key `key`, or None."""
    if not key:
        return None
    found = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if found is None or found.revoked_at is not None:
        return None
    return found.user


def can_read(user: User | None, job: Job) -> bool:
    """Whether `user` (None: anonymous) may see `job` and its results."""
    if job.visibility == "public":
        return True
    if user is None:
        return False
    if user.role == "admin" or job.owner_id == user.id:
        return True
    return job.visibility == "shared" and any(s.user_id == user.id for s in job.shares)


def can_write(user: User, job: Job) -> bool:
    """Whether `user` may cancel, dismiss or re-share `job`."""
    return user.role == "admin" or job.owner_id == user.id


def can_submit(user: User) -> bool:
    """Whether `user`'s role allows submitting jobs."""
    return user.role in ("admin", "scientist")
