"""Errors and request dependencies of the HTTP API: callers, sessions, job access.

Every error is answered with an OGC exception document {"type", "title", "status",
"detail"}; `_ERRORS` maps the library's exceptions to HTTP codes. A job the caller may not
read is answered 404, exactly as a job that does not exist, so that job ids do not leak.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import or_, select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtinsar.errors import MtinsarError
from mtinsar.service import auth, db, processes, queue
from mtinsar.service.db import Job, JobShare, User
from mtinsar.service.schemas import OGC_EXC, ExceptionDoc
from mtinsar.service.settings import ServiceConfig


class ApiError(Exception):
    """An error answered as an OGC exception document."""

    def __init__(self, status: int, detail: str, type_: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.type = type_ or "about:blank"


# library exceptions -> HTTP status (user errors only; anything else is a bug and a 500)
_ERRORS: dict[type[Exception], int] = {
    MtinsarError: 400,
    queue.QuotaExceeded: 429,
    DataError: 400,  # a value the database cannot hold (PostgreSQL: a NUL character)
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ExceptionDoc} for code in (400, 401, 403, 404)
}


def _problem(
    status: int, detail: str, type_: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The OGC exception document (RFC 7807 fields) answering an error."""
    body = {"type": type_ or "about:blank", "title": HTTPStatus(status).phrase}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="mtinsar"'}
    return JSONResponse(
        {**body, "status": status, "detail": detail}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    def _api(request: Request, exc: ApiError) -> JSONResponse:
        return _problem(exc.status, exc.detail, exc.type)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return _problem(400, f"invalid request: {where}")

    for kind, status in _ERRORS.items():
        app.add_exception_handler(kind, lambda r, e, s=status: _problem(s, _message(e)))

    @app.exception_handler(Exception)
    def _bug(request: Request, exc: Exception) -> JSONResponse:
        # still logged with its traceback by Starlette; the client gets the usual document
        return _problem(500, "internal error of the service; the administrator has the details")


def _message(exc: Exception) -> str:
    if isinstance(exc, DataError):  # not the SQL statement, only what was wrong
        return f"invalid value in the request: {exc.orig}"
    return str(exc)


# --------------------------------------------------------------------------- dependencies

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="bearer")


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def _config(request: Request) -> ServiceConfig:
    return request.app.state.config


SessionDep = Annotated[Session, Depends(_session)]
ConfigDep = Annotated[ServiceConfig, Depends(_config)]


def caller(
    session: SessionDep,
    key: Annotated[str | None, Security(_api_key)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> User | None:
    """The user of the request's API key; None when no key is given (anonymous)."""
    given = key or (bearer.credentials if bearer else None)
    if not given:
        return None
    user = auth.authenticate(session, given)
    if user is None:
        raise ApiError(401, "the API key is unknown or revoked; ask an admin for a new one")
    return user


CallerDep = Annotated[User | None, Depends(caller)]


def _signed_in(user: CallerDep) -> User:
    if user is None:
        raise ApiError(401, "this needs an API key (header 'Authorization: Bearer KEY')")
    return user


def _admin(user: Annotated[User, Depends(_signed_in)]) -> User:
    if user.role != "admin":
        raise ApiError(403, f"only admins may manage users; {user.name!r} is a {user.role}")
    return user


UserDep = Annotated[User, Depends(_signed_in)]
AdminDep = Annotated[User, Depends(_admin)]


def get_job(session: Session, job_id: str) -> Job | None:
    # an id PostgreSQL cannot even compare (NUL) names no job
    return None if "\x00" in job_id else session.get(Job, job_id)


def readable_job(session: Session, user: User | None, job_id: str) -> Job:
    job = get_job(session, job_id)
    if job is None or not auth.can_read(user, job):
        raise ApiError(404, f"no job {job_id!r}", OGC_EXC + "no-such-job")
    return job


def writable_job(session: Session, user: User | None, job_id: str) -> Job:
    job = readable_job(session, user, job_id)
    if user is None or not auth.can_write(user, job):
        raise ApiError(403, f"only the owner of job {job_id!r} or an admin may change it")
    return job


def job_result_dir(job_id: str, session: SessionDep, user: CallerDep, config: ConfigDep) -> Path:
    """Dependency: the result folder of a job the caller may read (404 otherwise)."""
    job = readable_job(session, user, job_id)
    folder = config.job_dir(job.id) / processes.RESULT
    if job.status != db.SUCCESSFUL or not folder.is_dir():
        raise ApiError(404, f"job {job_id!r} has no result yet", OGC_EXC + "result-not-ready")
    return folder


def readable_sbas_results(
    session: SessionDep, user: CallerDep, config: ConfigDep
) -> list[tuple[Job, Path]]:
    """Dependency: (job, result folder) of every successful sbas job the caller may read."""
    query = visible(select(Job), user).where(Job.process_id == "sbas", Job.status == db.SUCCESSFUL)
    jobs = session.scalars(query.order_by(Job.created_at)).all()
    found = [(job, config.job_dir(job.id) / processes.RESULT) for job in jobs]
    return [(job, folder) for job, folder in found if (folder / "summary.json").is_file()]


def readable_sbas_result(
    job_id: str, session: SessionDep, user: CallerDep, config: ConfigDep
) -> tuple[Job, Path]:
    """Dependency: (job, result folder) of one successful sbas job the caller may read."""
    job = readable_job(session, user, job_id)
    folder = config.job_dir(job.id) / processes.RESULT
    if job.process_id != "sbas" or not (folder / "summary.json").is_file():
        raise ApiError(404, f"job {job_id!r} has no sbas result")
    return job, folder


def visible(query: Any, user: User | None) -> Any:
    """`query` over jobs restricted to those `user` may read (auth.can_read, in SQL)."""
    if user is not None and user.role == "admin":
        return query
    if user is None:
        return query.where(Job.visibility == "public")
    shared = select(JobShare.job_id).where(JobShare.user_id == user.id)
    return query.where(
        or_(
            Job.visibility == "public",
            Job.owner_id == user.id,
            (Job.visibility == "shared") & Job.id.in_(shared),
        )
    )
