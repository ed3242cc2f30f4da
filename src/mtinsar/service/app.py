"""The HTTP API of `mtinsar serve`: OGC API - Processes - Part 1: Core, sharing, files.

Callers identify with `Authorization: Bearer KEY` or `X-API-Key: KEY`; no key means
anonymous (public jobs only), an unknown or revoked key is refused with 401 (deps.py).
Documents are in schemas.py, user routes in users.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtinsar import __version__
from mtinsar.service import auth, db, maps, processes, queue, stac
from mtinsar.service.db import Job, JobShare, User
from mtinsar.service.deps import (
    ERROR_RESPONSES,
    ApiError,
    CallerDep,
    ConfigDep,
    SessionDep,
    UserDep,
    caller,
    get_job,
    install_error_handlers,
    job_result_dir,
    readable_job,
    readable_sbas_result,
    readable_sbas_results,
    visible,
    writable_job,
)
from mtinsar.service.schemas import (
    OGC_EXC,
    OGC_REL,
    Access,
    Conformance,
    ExceptionDoc,
    Execute,
    JobList,
    LandingPage,
    Link,
    OutputRef,
    ProcessDescription,
    ProcessList,
    ProcessSummary,
    StatusInfo,
)
from mtinsar.service.settings import ServiceConfig
from mtinsar.service.users import users_router

CONFORMANCE = [
    f"http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{c}"
    for c in ("core", "ogc-process-description", "json", "oas30", "job-list", "dismiss")
]
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"
WEBMAP_INDEX = Path(__file__).with_name("webmap") / "index.html"
_NAME = r"^[A-Za-z0-9_.\-]{1,80}$"


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
    job = get_job(session, job_id)
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
    """Conformance, processes and execution (OGC API - Processes, Part 1)."""
    router = APIRouter(responses=ERROR_RESPONSES)

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

    return router


def _jobs_router() -> APIRouter:
    """Job list, status and dismissal (OGC API - Processes, Part 1)."""
    router = APIRouter(responses=ERROR_RESPONSES)

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
        query = visible(select(Job), user)
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
        return _status_info(readable_job(session, user, job_id), _base(request))

    @router.delete(
        "/jobs/{job_id}",
        response_model=StatusInfo,
        response_model_exclude_none=True,  # started/finished only once known
        tags=["OGC API"],
    )
    def dismiss(
        job_id: str, request: Request, user: CallerDep, session: SessionDep, config: ConfigDep
    ) -> StatusInfo:
        """Cancel a queued or running job, or remove a finished job's results (owner/admin)."""
        job = writable_job(session, user, job_id)
        finished = job.status in db.FINISHED
        queue.cancel(session, job)
        session.commit()
        if finished:  # OGC dismiss: the results go; a running job's worker cleans up itself
            shutil.rmtree(config.job_dir(job.id) / processes.RESULT, ignore_errors=True)
        return _status_info(job, _base(request))

    return router


def _results_router() -> APIRouter:
    """A successful job's outputs (OGC API - Processes, Part 1)."""
    router = APIRouter(responses=ERROR_RESPONSES)

    @router.get("/jobs/{job_id}/results", response_model=dict[str, OutputRef], tags=["OGC API"])
    def results(
        job_id: str, request: Request, user: CallerDep, session: SessionDep, config: ConfigDep
    ) -> dict[str, OutputRef]:
        """Links to a successful job's outputs."""
        job = readable_job(session, user, job_id)
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
    router = APIRouter(responses=ERROR_RESPONSES, tags=["results"])

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
    router = APIRouter(responses=ERROR_RESPONSES, tags=["sharing"])

    def shares(session: Session, job: Job) -> Access:
        ids = [s.user_id for s in job.shares]
        names = session.scalars(select(User.name).where(User.id.in_(ids))).all() if ids else []
        return Access(visibility=job.visibility, shared_with=sorted(names))

    @router.get("/jobs/{job_id}/access", response_model=Access)
    def get_access(job_id: str, user: CallerDep, session: SessionDep) -> Access:
        """Who may read a job (owner or admin)."""
        return shares(session, writable_job(session, user, job_id))

    @router.put("/jobs/{job_id}/access", response_model=Access)
    def set_access(job_id: str, body: Access, user: CallerDep, session: SessionDep) -> Access:
        """Make a job private, shared with named users, or public (owner or admin)."""
        job = writable_job(session, user, job_id)
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


class ConcurrencyLimit:
    """ASGI middleware: at most `limit` HTTP requests inside the app at once; others wait.

    FastAPI runs each sync dependency and endpoint on one of 40 pool threads, and a request
    keeps its database connection between those steps. With hundreds of requests in flight,
    every thread can end up waiting for a connection held by a request that itself waits for
    a thread (a deadlock, seen at 120 concurrent requests). Waiting here, in the event loop,
    holds neither; `limit` stays below both the thread count and the connection pool.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.slots = app, asyncio.Semaphore(limit)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.slots:
            await self.app(scope, receive, send)


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
        dependencies=[Depends(caller)],  # a bad key is refused everywhere, public pages too
    )
    app.state.config, app.state.engine = config, engine
    app.state.sessions = db.sessions(engine)
    install_error_handlers(app)
    app.add_middleware(ConcurrencyLimit, limit=config.max_concurrent_requests)
    _landing(app)  # before the web map's own "/" route, so that it negotiates JSON vs HTML
    for router in (
        _ogc_router(),
        _jobs_router(),
        _results_router(),
        _files_router(),
        _access_router(),
        users_router(),
    ):
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
