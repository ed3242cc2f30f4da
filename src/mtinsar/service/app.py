"""The HTTP API of `mtinsar serve`: OGC API - Processes - Part 1: Core, users, sharing, files.

Every error is answered with an OGC exception document {"type", "title", "status",
"detail"}; the table `_ERRORS` maps the library's exceptions to HTTP codes. A job the
caller may not read is answered 404, exactly as a job that does not exist, so that job ids
do not leak. Callers identify with `Authorization: Bearer KEY` or `X-API-Key: KEY`; no key
means anonymous (public jobs only), an unknown or revoked key is refused with 401.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtinsar import __version__
from mtinsar.errors import MtinsarError
from mtinsar.service import auth, db, maps, processes, queue, stac
from mtinsar.service.db import Job, JobShare, User
from mtinsar.service.settings import ServiceConfig

OGC_EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
CONFORMANCE = [
    f"http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{c}"
    for c in ("core", "ogc-process-description", "json", "oas30", "job-list", "dismiss")
]
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"
WEBMAP_INDEX = Path(__file__).with_name("webmap") / "index.html"
_NAME = r"^[A-Za-z0-9_.\-]{1,80}$"


# --------------------------------------------------------------------------- documents


class Link(BaseModel):
    href: str
    rel: str
    type: str = "application/json"
    title: str = ""


class LandingPage(BaseModel):
    title: str
    description: str
    links: list[Link]


class Conformance(BaseModel):
    conformsTo: list[str]  # noqa: N815 (names as the standard spells them)


class ProcessSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    title: str
    description: str
    version: str
    jobControlOptions: list[str]  # noqa: N815
    outputTransmission: list[str]  # noqa: N815
    links: list[Link]


class ProcessDescription(ProcessSummary):
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]


class ProcessList(BaseModel):
    processes: list[ProcessSummary]
    links: list[Link]


class Execute(BaseModel):
    """The body of an execution request (OGC execute.yaml; only async execution exists)."""

    inputs: dict[str, Any] = Field(default_factory=dict, description="Input name -> value.")
    outputs: dict[str, Any] | None = Field(None, description="Ignored: every output is given.")
    response: Literal["raw", "document"] = Field("document", description="Results format.")
    subscriber: dict[str, Any] | None = Field(None, description="Not supported; ignored.")


class StatusInfo(BaseModel):
    jobID: str  # noqa: N815
    processID: str  # noqa: N815
    type: Literal["process"] = "process"
    status: Literal["accepted", "running", "successful", "failed", "dismissed"]
    message: str
    created: dt.datetime
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    updated: dt.datetime
    progress: int = Field(ge=0, le=100)
    links: list[Link]


class JobList(BaseModel):
    jobs: list[StatusInfo]
    links: list[Link]


class OutputRef(BaseModel):
    href: str
    type: str


class Access(BaseModel):
    visibility: Literal["private", "shared", "public"]
    shared_with: list[Annotated[str, Field(pattern=_NAME)]] = Field(
        default_factory=list, description="User names who may read a 'shared' job."
    )


class UserInfo(BaseModel):
    name: str
    role: Literal["admin", "scientist", "viewer"]
    quota_cpu_seconds: float | None = Field(description="None: unlimited.")
    cpu_seconds_used: float
    cpu_seconds_left: float | None = Field(description="None: unlimited.")


class NewUser(BaseModel):
    name: str = Field(pattern=_NAME)
    role: Literal["admin", "scientist", "viewer"]
    quota_cpu_seconds: float | None = Field(None, ge=0, description="None: unlimited.")


class UserChange(BaseModel):
    role: Literal["admin", "scientist", "viewer"] | None = None
    quota_cpu_seconds: float | None = Field(None, ge=0, description="null: unlimited.")


class UserWithKey(UserInfo):
    api_key: str = Field(description="Shown this once only; store it safely.")


class Revoked(BaseModel):
    name: str
    revoked: int


class ExceptionDoc(BaseModel):
    type: str
    title: str
    status: int
    detail: str


# --------------------------------------------------------------------------- errors


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
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
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


def _install_error_handlers(app: FastAPI) -> None:
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


def _caller(
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


CallerDep = Annotated[User | None, Depends(_caller)]


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


def _get_job(session: Session, job_id: str) -> Job | None:
    # an id PostgreSQL cannot even compare (NUL) names no job
    return None if "\x00" in job_id else session.get(Job, job_id)


def _readable_job(session: Session, user: User | None, job_id: str) -> Job:
    job = _get_job(session, job_id)
    if job is None or not auth.can_read(user, job):
        raise ApiError(404, f"no job {job_id!r}", OGC_EXC + "no-such-job")
    return job


def _writable_job(session: Session, user: User | None, job_id: str) -> Job:
    job = _readable_job(session, user, job_id)
    if user is None or not auth.can_write(user, job):
        raise ApiError(403, f"only the owner of job {job_id!r} or an admin may change it")
    return job


def job_result_dir(job_id: str, session: SessionDep, user: CallerDep, config: ConfigDep) -> Path:
    """Dependency: the result folder of a job the caller may read (404 otherwise)."""
    job = _readable_job(session, user, job_id)
    folder = config.job_dir(job.id) / processes.RESULT
    if job.status != db.SUCCESSFUL or not folder.is_dir():
        raise ApiError(404, f"job {job_id!r} has no result yet", OGC_EXC + "result-not-ready")
    return folder


def readable_sbas_results(
    session: SessionDep, user: CallerDep, config: ConfigDep
) -> list[tuple[Job, Path]]:
    """Dependency: (job, result folder) of every successful sbas job the caller may read."""
    query = _visible(select(Job), user).where(Job.process_id == "sbas", Job.status == db.SUCCESSFUL)
    jobs = session.scalars(query.order_by(Job.created_at)).all()
    found = [(job, config.job_dir(job.id) / processes.RESULT) for job in jobs]
    return [(job, folder) for job, folder in found if (folder / "summary.json").is_file()]


def readable_sbas_result(
    job_id: str, session: SessionDep, user: CallerDep, config: ConfigDep
) -> tuple[Job, Path]:
    """Dependency: (job, result folder) of one successful sbas job the caller may read."""
    job = _readable_job(session, user, job_id)
    folder = config.job_dir(job.id) / processes.RESULT
    if job.process_id != "sbas" or not (folder / "summary.json").is_file():
        raise ApiError(404, f"job {job_id!r} has no sbas result")
    return job, folder


def _visible(query: Any, user: User | None) -> Any:
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


# --------------------------------------------------------------------------- helpers


def _base(request: Request) -> str:
    return str(request.base_url)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; they were written in UTC
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _status_info(job: Job, base: str) -> StatusInfo:
    links = [Link(href=f"{base}jobs/{job.id}", rel="self", title="Job status")]
    if job.status == db.SUCCESSFUL:
        links.append(
            Link(href=f"{base}jobs/{job.id}/results", rel=OGC_REL + "results", title="Results")
        )
        if job.process_id == "sbas":
            links.append(
                Link(
                    href=f"{base}stac/collections/results/items/{job.id}",
                    rel="alternate",
                    type="application/geo+json",
                    title="STAC item of the result",
                )
            )
    return StatusInfo(
        jobID=job.id,
        processID=job.process_id,
        status=job.status,
        message=job.message or job.status,
        created=_utc(job.created_at),
        started=_utc(job.started_at),
        finished=_utc(job.finished_at),
        updated=_utc(job.updated_at),
        progress=max(0, min(100, job.progress or 0)),
        links=links,
    )


def _process(process_id: str) -> processes.Process:
    found = processes.PROCESSES.get(process_id)
    if found is None:
        raise ApiError(
            404,
            f"no process {process_id!r}; there are {', '.join(processes.PROCESSES)}",
            OGC_EXC + "no-such-process",
        )
    return found


def _process_links(process_id: str, base: str) -> list[Link]:
    return [
        Link(href=f"{base}processes/{process_id}", rel="self", title="Process description"),
        Link(
            href=f"{base}processes/{process_id}/execution",
            rel=OGC_REL + "execute",
            title="Execute the process",
        ),
    ]


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


def _wants_html(request: Request, f: str | None) -> bool:
    """Whether `/` should be the web map: f=html, or an Accept preferring HTML over JSON.

    `*/*` alone (curl, OWSLib, requests) is answered with JSON: API clients rarely say
    what they accept, browsers always name text/html.
    """
    if f is not None:
        return f == "html"
    weights: dict[str, float] = {}
    for part in request.headers.get("accept", "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    html = weights.get("text/html", 0.0)
    return html > 0 and html >= weights.get("application/json", 0.0)


_QUALIFIED = {"value", "mediaType", "encoding", "schema"}


def _plain_values(inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs with OGC qualified values ({"value": v, "mediaType": ...}) replaced by v."""
    return {
        name: value["value"]
        if isinstance(value, dict) and "value" in value and set(value) <= _QUALIFIED
        else value
        for name, value in inputs.items()
    }


def _check_job_input(session: Session, user: User, process_id: str, inputs: dict[str, Any]) -> None:
    """The `job` input of update/infra must be a successful sbas job the caller may use."""
    job_id = inputs.get("job")
    if process_id not in ("update", "infra") or not isinstance(job_id, str):
        return
    job = _get_job(session, job_id)
    if job is None or not auth.can_read(user, job):
        raise ApiError(404, f"input 'job': no job {job_id!r}", OGC_EXC + "no-such-job")
    if job.process_id != "sbas" or job.status != db.SUCCESSFUL:
        raise ApiError(
            400,
            f"input 'job': job {job_id!r} is a {job.status} {job.process_id} job; "
            "it must be a successful sbas job",
        )
    if process_id == "update" and not auth.can_write(user, job):
        raise ApiError(403, f"input 'job': only the owner of job {job_id!r} may update it")


# --------------------------------------------------------------------------- routes


def _ogc_router() -> APIRouter:
    router = APIRouter(responses=_ERROR_RESPONSES)

    @router.get("/conformance", response_model=Conformance, tags=["OGC API"])
    def conformance() -> Conformance:
        """Conformance classes this service implements."""
        return Conformance(conformsTo=CONFORMANCE)

    @router.get("/processes", response_model=ProcessList, tags=["OGC API"])
    def process_list(request: Request) -> ProcessList:
        """The processes this service runs."""
        base = _base(request)
        summaries = []
        for p in processes.PROCESSES.values():
            doc = {k: v for k, v in p.describe().items() if k not in ("inputs", "outputs")}
            summaries.append(ProcessSummary(**doc, links=_process_links(p.id, base)))
        return ProcessList(processes=summaries, links=[Link(href=f"{base}processes", rel="self")])

    @router.get("/processes/{process_id}", response_model=ProcessDescription, tags=["OGC API"])
    def process_description(process_id: str, request: Request) -> ProcessDescription:
        """A process's inputs and outputs."""
        p = _process(process_id)
        return ProcessDescription(**p.describe(), links=_process_links(p.id, _base(request)))

    @router.post(
        "/processes/{process_id}/execution",
        status_code=201,
        response_model=StatusInfo,
        response_model_exclude_none=True,  # started/finished only once known
        tags=["OGC API"],
        responses={429: {"model": ExceptionDoc, "description": "Quota spent"}},
    )
    def execute(
        process_id: str,
        body: Execute,
        request: Request,
        response: Response,
        user: UserDep,
        session: SessionDep,
        config: ConfigDep,
    ) -> StatusInfo:
        """Queue a job (asynchronous execution only); its status is at the Location."""
        p = _process(process_id)
        if not auth.can_submit(user):
            raise ApiError(403, f"{user.name!r} is a {user.role}: viewers may not submit jobs")
        try:
            inputs = p.check(_plain_values(body.inputs), config)
        except (ValueError, TypeError) as exc:  # pydantic errors of nested configs
            raise ApiError(400, f"invalid inputs: {exc}") from exc
        _check_job_input(session, user, process_id, inputs)
        job = queue.submit(session, user, p.id, inputs)
        session.commit()
        base = _base(request)
        response.headers["Location"] = f"{base}jobs/{job.id}"
        response.headers["Preference-Applied"] = "respond-async"
        return _status_info(job, base)

    @router.get("/jobs", response_model=JobList, response_model_exclude_none=True, tags=["OGC API"])
    def job_list(
        request: Request,
        user: CallerDep,
        session: SessionDep,
        status: Annotated[
            list[Literal["accepted", "running", "successful", "failed", "dismissed"]] | None,
            Query(description="Only jobs in these states."),
        ] = None,
        processID: Annotated[  # noqa: N803
            list[str] | None, Query(description="Only jobs of these processes.")
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=10000, description="At most this many (newest first).")
        ] = 10,
    ) -> JobList:
        """Jobs the caller may see, newest first."""
        query = _visible(select(Job), user)
        if status:
            query = query.where(Job.status.in_(status))
        if processID:  # only known ids can match (and others may hold what SQL cannot)
            query = query.where(Job.process_id.in_(set(processID) & set(processes.PROCESSES)))
        jobs = session.scalars(query.order_by(Job.created_at.desc()).limit(limit)).all()
        base = _base(request)
        return JobList(
            jobs=[_status_info(job, base) for job in jobs],
            links=[Link(href=f"{base}jobs", rel="self")],
        )

    @router.get(
        "/jobs/{job_id}",
        response_model=StatusInfo,
        response_model_exclude_none=True,  # started/finished only once known
        tags=["OGC API"],
    )
    def job_status(
        job_id: str, request: Request, user: CallerDep, session: SessionDep
    ) -> StatusInfo:
        """A job's status."""
        return _status_info(_readable_job(session, user, job_id), _base(request))

    @router.delete(
        "/jobs/{job_id}",
        response_model=StatusInfo,
        response_model_exclude_none=True,  # started/finished only once known
        tags=["OGC API"],
    )
    def dismiss(job_id: str, request: Request, user: CallerDep, session: SessionDep) -> StatusInfo:
        """Cancel a queued or running job (owner or admin)."""
        job = _writable_job(session, user, job_id)
        queue.cancel(session, job)
        session.commit()
        return _status_info(job, _base(request))

    @router.get("/jobs/{job_id}/results", response_model=dict[str, OutputRef], tags=["OGC API"])
    def results(
        job_id: str, request: Request, user: CallerDep, session: SessionDep, config: ConfigDep
    ) -> dict[str, OutputRef]:
        """Links to a successful job's outputs."""
        job = _readable_job(session, user, job_id)
        if job.status != db.SUCCESSFUL:
            raise ApiError(
                404,
                f"job {job_id!r} is {job.status}: {job.message or 'no result yet'}",
                OGC_EXC + "result-not-ready",
            )
        base = _base(request)
        folder = config.job_dir(job.id) / processes.RESULT
        found = {
            name: OutputRef(href=f"{base}jobs/{job.id}/files/{file}", type=media)
            for name, (file, media, _) in _process(job.process_id).outputs.items()
            if (folder / file).exists()
        }
        target = job.inputs.get("job") if isinstance(job.inputs, dict) else None
        if job.process_id == "update" and isinstance(target, str):
            found["job"] = OutputRef(href=f"{base}jobs/{target}/results", type="application/json")
        return found

    return router


def _files_router() -> APIRouter:
    router = APIRouter(responses=_ERROR_RESPONSES, tags=["results"])

    def result_file(path: str, folder: Annotated[Path, Depends(job_result_dir)]) -> FileResponse:
        """A file of a job's result: COG layers, Zarr store files, report.html, summary.json."""
        root = folder.resolve()
        target = (root / path).resolve()
        if root not in target.parents or not target.is_file():
            raise ApiError(404, f"no file {path!r} in this job's result")
        media = "application/json" if target.suffix == ".json" else None
        return FileResponse(target, media_type=media)

    for method in ("GET", "HEAD"):
        router.add_api_route(
            "/jobs/{job_id}/files/{path:path}",
            result_file,
            methods=[method],
            operation_id=f"result_file_{method.lower()}",
            response_class=FileResponse,
            responses={200: {"description": "The file (HTTP Range requests are honoured)."}},
        )

    return router


def _access_router() -> APIRouter:
    router = APIRouter(responses=_ERROR_RESPONSES, tags=["sharing"])

    def shares(session: Session, job: Job) -> Access:
        ids = [s.user_id for s in job.shares]
        names = session.scalars(select(User.name).where(User.id.in_(ids))).all() if ids else []
        return Access(visibility=job.visibility, shared_with=sorted(names))

    @router.get("/jobs/{job_id}/access", response_model=Access)
    def get_access(job_id: str, user: CallerDep, session: SessionDep) -> Access:
        """Who may read a job (owner or admin)."""
        return shares(session, _writable_job(session, user, job_id))

    @router.put("/jobs/{job_id}/access", response_model=Access)
    def set_access(job_id: str, body: Access, user: CallerDep, session: SessionDep) -> Access:
        """Make a job private, shared with named users, or public (owner or admin)."""
        job = _writable_job(session, user, job_id)
        wanted = set(body.shared_with)
        users = session.scalars(select(User).where(User.name.in_(wanted))).all() if wanted else []
        unknown = wanted - {u.name for u in users}
        if unknown:
            raise ApiError(400, f"shared_with: no user(s) {', '.join(sorted(unknown))}")
        job.visibility = body.visibility
        job.shares = [JobShare(job_id=job.id, user_id=u.id) for u in users]
        job.updated_at = db.utcnow()
        session.commit()
        return shares(session, job)

    return router


def _users_router() -> APIRouter:
    router = APIRouter(responses=_ERROR_RESPONSES, tags=["users"])

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


def _landing(app: FastAPI) -> None:
    @app.get(
        "/",
        response_model=LandingPage,
        tags=["OGC API"],
        responses={200: {"content": {"text/html": {}}}},
    )
    def landing(
        request: Request,
        f: Annotated[
            Literal["json", "html"] | None, Query(description="json: landing page; html: map")
        ] = None,
    ) -> Any:
        """The landing page (JSON), or the web map for browsers (`f=html`)."""
        if _wants_html(request, f):
            if WEBMAP_INDEX.is_file():
                return FileResponse(WEBMAP_INDEX, media_type="text/html")
            return HTMLResponse(
                "<!doctype html><title>mtinsar</title><h1>mtinsar</h1>"
                '<p><a href="docs">API documentation</a> · <a href="?f=json">landing page</a>'
            )
        base = _base(request)
        return LandingPage(
            title="mtinsar",
            description="Multi-temporal InSAR processing (OGC API - Processes)",
            links=[
                Link(href=f"{base}?f=json", rel="self", title="This document"),
                Link(href=f"{base}?f=html", rel="alternate", type="text/html", title="Web map"),
                Link(href=f"{base}openapi.json", rel="service-desc", type=OPENAPI_JSON),
                Link(href=f"{base}docs", rel="service-doc", type="text/html"),
                Link(href=f"{base}conformance", rel=OGC_REL + "conformance"),
                Link(href=f"{base}processes", rel=OGC_REL + "processes"),
                Link(href=f"{base}jobs", rel=OGC_REL + "job-list"),
                Link(href=f"{base}stac", rel="data", title="STAC catalog of results"),
            ],
        )


# --------------------------------------------------------------------------- the app


def create_app(config: ServiceConfig) -> FastAPI:
    """The service's FastAPI app; its database is migrated on creation."""
    engine = db.connect(config.url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        engine.dispose()

    app = FastAPI(
        title="mtinsar",
        version=__version__,
        description="Multi-temporal InSAR as a service: OGC API - Processes, STAC, web map.",
        lifespan=lifespan,
        dependencies=[Depends(_caller)],  # a bad key is refused everywhere, public pages too
    )
    app.state.config, app.state.engine = config, engine
    app.state.sessions = db.sessions(engine)
    _install_error_handlers(app)
    _landing(app)  # before the web map's own "/" route, so that it negotiates JSON vs HTML
    for router in (_ogc_router(), _files_router(), _access_router(), _users_router()):
        app.include_router(router)
    app.include_router(stac.make_router(readable_sbas_results, readable_sbas_result))
    app.include_router(maps.make_router(job_result_dir))
    maps.mount_webmap(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document, saying 400 (as answered) where FastAPI's default says 422."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        problem = {"application/json": {"schema": {"$ref": "#/components/schemas/ExceptionDoc"}}}
        for operation in (op for path in doc["paths"].values() for op in path.values()):
            if operation["responses"].pop("422", None) is not None:
                operation["responses"]["400"] = {"description": "Bad request", "content": problem}
        for unused in ("HTTPValidationError", "ValidationError"):
            doc["components"]["schemas"].pop(unused, None)
        app.openapi_schema = doc
    return app.openapi_schema
