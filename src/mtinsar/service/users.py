"""User routes of the HTTP API: the caller's own account, and user management for admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtinsar.service import auth, queue
from mtinsar.service.db import User
from mtinsar.service.deps import ERROR_RESPONSES, AdminDep, ApiError, SessionDep, UserDep
from mtinsar.service.schemas import NewUser, Revoked, UserChange, UserInfo, UserWithKey


def _user_info(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role,
        "quota_cpu_seconds": user.quota_cpu_seconds,
        "cpu_seconds_used": user.cpu_seconds_used or 0.0,
        "cpu_seconds_left": queue.quota_left(user),
    }


def _named_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise ApiError(404, f"no user {name!r}")
    return user


def users_router() -> APIRouter:
    router = APIRouter(responses=ERROR_RESPONSES, tags=["users"])

    @router.get("/users/me", response_model=UserInfo)
    def me(user: UserDep) -> dict[str, Any]:
        """The caller: role, quota [CPU-seconds], CPU-seconds used and left."""
        return _user_info(user)

    @router.get("/admin/users", response_model=list[UserInfo])
    def list_users(admin: AdminDep, session: SessionDep) -> list[dict[str, Any]]:
        """Every user (admin)."""
        return [_user_info(u) for u in session.scalars(select(User).order_by(User.name))]

    @router.post("/admin/users", status_code=201, response_model=UserWithKey)
    def add_user(body: NewUser, admin: AdminDep, session: SessionDep) -> dict[str, Any]:
        """Create a user and their first API key, shown this once (admin)."""
        if session.scalar(select(User).where(User.name == body.name)) is not None:
            raise ApiError(409, f"user {body.name!r} exists already; choose another name")
        user, key = auth.create_user(session, body.name, body.role, body.quota_cpu_seconds)
        session.commit()
        return {**_user_info(user), "api_key": key}

    @router.patch("/admin/users/{name}", response_model=UserInfo)
    def change_user(
        name: str, body: UserChange, admin: AdminDep, session: SessionDep
    ) -> dict[str, Any]:
        """Change a user's role or quota (admin); a null quota means unlimited."""
        user = _named_user(session, name)
        if body.role is not None:
            user.role = body.role
        if "quota_cpu_seconds" in body.model_fields_set:
            user.quota_cpu_seconds = body.quota_cpu_seconds
        session.commit()
        return _user_info(user)

    @router.post("/admin/users/{name}/keys", status_code=201, response_model=UserWithKey)
    def new_key(name: str, admin: AdminDep, session: SessionDep) -> dict[str, Any]:
        """Issue another API key for a user, shown this once (admin)."""
        user = _named_user(session, name)
        key = auth.issue_key(session, user)
        session.commit()
        return {**_user_info(user), "api_key": key}

    @router.delete("/admin/users/{name}/keys", response_model=Revoked)
    def revoke(name: str, admin: AdminDep, session: SessionDep) -> Revoked:
        """Revoke every API key of a user (admin)."""
        user = _named_user(session, name)
        count = auth.revoke_keys(session, user)
        session.commit()
        return Revoked(name=name, revoked=count)

    return router
