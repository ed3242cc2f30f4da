"""The JSON documents of the HTTP API (OGC API - Processes - Part 1: Core schemas, users)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

OGC_EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
_NAME = r"^[A-Za-z0-9_.\-]{1,80}$"


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
