"""Settings of the service and its workers (one model, shared by `serve` and `worker`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class ServiceConfig(BaseModel):
    """Where the service keeps its state and how jobs run."""

    data_dir: Path = Field(
        Path("mtinsar_service"), description="Folder for job folders (and the SQLite database)."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; default: SQLite "
        "file data_dir/mtinsar.db (zero setup).",
    )
    lease_seconds: float = Field(
        60.0, gt=0, description="A running job whose worker is silent this long is re-queued."
    )
    max_attempts: int = Field(3, ge=1, description="Claims of a job before it is failed.")
    poll_seconds: float = Field(2.0, gt=0, description="Pause of an idle worker between looks.")
    default_quota_cpu_seconds: float | None = Field(
        None, description="CPU-seconds a new user may spend (None: unlimited)."
    )
    max_concurrent_requests: int = Field(
        32,
        ge=1,
        le=40,
        description="HTTP requests handled at once; more wait their turn (<= 40, the threads "
        "FastAPI runs requests on).",
    )
    source_roots: list[str] = Field(
        default_factory=list,
        description="Local folders jobs may read products from (besides s3:// and https://); "
        "empty: only data_dir/inbox.",
    )

    @property
    def url(self) -> str:
        """The database URL in force."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'mtinsar.db'}"

    def job_dir(self, job_id: str) -> Path:
        """The folder of one job (its result lies in `result/`)."""
        return self.data_dir / "jobs" / job_id

    def allowed_roots(self) -> list[Path]:
        """Local folders a job may read products from."""
        roots = self.source_roots or [str(self.data_dir / "inbox")]
        return [Path(r).resolve() for r in roots]
