"""What the service runs: the `sbas`, `update` and `infra` processes.

Each process has an OGC API - Processes description (inputs as JSON Schema), a check of
its inputs at submission (so bad input is refused with 400 before any work), and a
function the worker calls to run it in the job's folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtinsar.errors import ConfigError, InputError
from mtinsar.service.settings import ServiceConfig

Progress = Callable[[int], None]
RESULT = "result"  # a job's result folder, inside its job folder

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
SBAS_OUTPUTS = {
    "velocity": ("velocity.tif", COG, "LOS velocity [m/yr], uplift positive"),
    "velocity_std": ("velocity_std.tif", COG, "Standard deviation of the velocity [m/yr]"),
    "temporal_coherence": ("temporal_coherence.tif", COG, "Temporal coherence [0-1]"),
    "mask": ("mask.tif", COG, "Reliable pixels (1) after the default mask rules"),
    "timeseries": ("timeseries.zarr", "application/vnd+zarr", "Zarr store of the time series"),
    "report": ("report.html", "text/html", "HTML report of the run"),
    "summary": ("summary.json", "application/json", "Run summary"),
}
INFRA_OUTPUTS = {
    "segments": ("segments.geojson", "application/geo+json", "Segments with their metrics"),
    "report": ("report.html", "text/html", "HTML report of the worst segments"),
    "summary": ("summary.json", "application/json", "Analysis summary"),
}

# Progress [%] when the pipeline starts each stage (its log line "stage NAME").
_STAGE_PROGRESS = {
    "statistics": 5,
    "reference": 30,
    "closure screening": 35,
    "inversion": 45,
    "corrections": 80,
}


@dataclass(frozen=True)
class Process:
    """One process: its description and what runs it."""

    id: str
    title: str
    description: str
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, tuple[str, str, str]]
    check: Callable[[dict[str, Any], ServiceConfig], dict[str, Any]]
    execute: Callable[[dict[str, Any], Path, ServiceConfig, Progress], dict[str, Any]]

    def describe(self) -> dict[str, Any]:
        """The OGC API - Processes process description (without links)."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "version": "1.0.0",
            "jobControlOptions": ["async-execute"],
            "outputTransmission": ["reference"],
            "inputs": self.inputs,
            "outputs": {
                name: {"title": title, "schema": {"type": "string", "contentMediaType": media}}
                for name, (_, media, title) in self.outputs.items()
            },
        }


def _input(title: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"title": title, "schema": schema, "minOccurs": int(required), "maxOccurs": 1}


def _source(inputs: dict[str, Any], config: ServiceConfig) -> str:
    """The `source` input, refused unless on object storage, HTTP or under an allowed root."""
    source = inputs.get("source")
    if not isinstance(source, str) or not source:
        raise InputError("input 'source' is missing: give a product folder, store, or URL")
    return _readable(source, "input 'source'", config)


def _readable(location: str, what: str, config: ServiceConfig) -> str:
    """`location` if a job may read it: a URL, or a path under the service's allowed roots."""
    if location.startswith(("s3://", "https://", "http://")):
        return location
    path = Path(location).resolve()
    roots = config.allowed_roots()
    if not any(path == root or root in path.parents for root in roots):
        raise InputError(
            f"{what} {location!r} is outside the folders this service reads from "
            f"({', '.join(map(str, roots))}); put the files there or use s3:// or https://"
        )
    if not path.exists():
        raise InputError(f"{what} {location!r} does not exist on the service")
    return str(path)


def _check_config_paths(cfg: Any, config: ServiceConfig) -> None:
    """Files named in a run configuration must be readable by jobs, like `source`."""
    named = {"ingest.dem": cfg.ingest.dem, "external.directory": cfg.external.directory}
    polygon = cfg.ingest.polygon
    if polygon is not None and not polygon.lstrip().startswith("{"):  # a file, not GeoJSON text
        named["ingest.polygon"] = polygon
    for key, value in named.items():
        if value is not None:
            _readable(value, f"input 'config' {key}", config)


def _run_config(inputs: dict[str, Any]) -> Any:
    from mtinsar.config import RunConfig

    raw = inputs.get("config") or {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "input 'config' must be an object of config sections (see `mtinsar config`)"
        )
    try:
        return RunConfig.model_validate(raw)
    except Exception as exc:  # pydantic's ValidationError: say which key, not a traceback
        raise ConfigError(f"input 'config' is invalid: {exc}") from exc


def _check_unknown(inputs: dict[str, Any], known: dict[str, Any]) -> None:
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise InputError(
            f"unknown input(s) {', '.join(unknown)}; this process takes {', '.join(known)}"
        )


def _check_sbas(inputs: dict[str, Any], config: ServiceConfig) -> dict[str, Any]:
    from mtinsar.workflows.pipeline import check_runnable

    _check_unknown(inputs, SBAS.inputs)
    cfg = _run_config(inputs)
    check_runnable(cfg)  # e.g. the jax backend on a service without jax: refused now
    _check_config_paths(cfg, config)
    return {"source": _source(inputs, config), "config": cfg.model_dump(mode="json")}


def _execute_sbas(
    inputs: dict[str, Any], job_dir: Path, config: ServiceConfig, progress: Progress
) -> dict[str, Any]:
    from mtinsar.config import RunConfig
    from mtinsar.workflows.jobs import run_to_folder

    cfg = RunConfig.model_validate(inputs["config"])
    with _stage_progress(progress):
        summary = run_to_folder(inputs["source"], job_dir / RESULT, cfg)
    return {"summary": summary}


def _check_update(inputs: dict[str, Any], config: ServiceConfig) -> dict[str, Any]:
    _check_unknown(inputs, UPDATE.inputs)
    if not isinstance(inputs.get("job"), str):
        raise InputError("input 'job' is missing: the id of the sbas job whose result to update")
    return {"job": inputs["job"], "source": _source(inputs, config)}


def _execute_update(
    inputs: dict[str, Any], job_dir: Path, config: ServiceConfig, progress: Progress
) -> dict[str, Any]:
    from mtinsar.config import RunConfig
    from mtinsar.results.versions import open_result
    from mtinsar.workflows.jobs import update_folder

    target = config.job_dir(inputs["job"]) / RESULT
    cfg = RunConfig.model_validate_json(open_result(target).attrs["config"])  # the run's own
    lines = update_folder(target, inputs["source"], cfg)
    return {"log": lines}


def _check_infra(inputs: dict[str, Any], config: ServiceConfig) -> dict[str, Any]:
    from mtinsar.infra.metrics import infra_config

    _check_unknown(inputs, INFRA.inputs)
    if not isinstance(inputs.get("job"), str):
        raise InputError("input 'job' is missing: the id of the sbas job to analyse")
    lines = inputs.get("lines")
    if not isinstance(lines, dict) or lines.get("type") not in ("FeatureCollection", "Feature"):
        raise InputError("input 'lines' must be a GeoJSON FeatureCollection or Feature object")
    cfg = infra_config(**(inputs.get("config") or {}))
    return {"job": inputs["job"], "lines": lines, "config": cfg.model_dump(mode="json")}


def _execute_infra(
    inputs: dict[str, Any], job_dir: Path, config: ServiceConfig, progress: Progress
) -> dict[str, Any]:
    from mtinsar.infra.metrics import InfraConfig
    from mtinsar.infra.report import run_infra

    job_dir.mkdir(parents=True, exist_ok=True)
    lines = job_dir / "lines.geojson"
    lines.write_text(json.dumps(inputs["lines"]))
    result = config.job_dir(inputs["job"]) / RESULT
    summary = run_infra(result, lines, job_dir / RESULT, InfraConfig(**inputs["config"]))
    # the map draws the segments over the analysed job's layers: record which job that is
    summary = {**summary, "job": inputs["job"]}
    _replace_json(job_dir / RESULT / "summary.json", summary)
    return {"summary": summary}


def _replace_json(path: Path, doc: dict[str, Any]) -> None:
    """Write `doc` to `path` atomically (a reader sees the old file or the new, whole)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


class _StageHandler(logging.Handler):
    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "stage %s" and record.args:
            percent = _STAGE_PROGRESS.get(str(record.args[0]))
            if percent is not None:
                self.progress(percent)


@contextlib.contextmanager
def _stage_progress(progress: Progress) -> Iterator[None]:
    """Report the pipeline's stages as progress while the block runs."""
    handler, logger = _StageHandler(progress), logging.getLogger("mtinsar.workflows.pipeline")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


_CONFIG_SCHEMA = {"type": "object", "description": "Config sections as in `mtinsar config`"}
SBAS = Process(
    id="sbas",
    title="SBAS time series and velocity",
    description="Ingest interferograms (any supported format, local or object storage) and "
    "invert them into LOS displacement time series and velocity (mtinsar run).",
    inputs={
        "source": _input(
            "Product folder, stack store, or s3:// / https:// URL", {"type": "string"}
        ),
        "config": _input("Run configuration", _CONFIG_SCHEMA, required=False),
    },
    outputs=SBAS_OUTPUTS,
    check=_check_sbas,
    execute=_execute_sbas,
)
UPDATE = Process(
    id="update",
    title="Near-real-time update",
    description="Append new acquisitions to an earlier sbas job's result as a new version "
    "(mtinsar update); writes alerts.geojson.",
    inputs={
        "job": _input("Id of the sbas job to update", {"type": "string"}),
        "source": _input("Product folder holding the new pairs", {"type": "string"}),
    },
    outputs={},
    check=_check_update,
    execute=_execute_update,
)
INFRA = Process(
    id="infra",
    title="Infrastructure stability",
    description="Per-segment motion, differential settlement and risk class of roads, "
    "railways or structures over an sbas job's result (mtinsar infra).",
    inputs={
        "job": _input("Id of the sbas job to analyse", {"type": "string"}),
        "lines": _input("GeoJSON FeatureCollection of lines or polygons", {"type": "object"}),
        "config": _input("Infra settings (InfraConfig)", _CONFIG_SCHEMA, required=False),
    },
    outputs=INFRA_OUTPUTS,
    check=_check_infra,
    execute=_execute_infra,
)
PROCESSES: dict[str, Process] = {p.id: p for p in (SBAS, UPDATE, INFRA)}
