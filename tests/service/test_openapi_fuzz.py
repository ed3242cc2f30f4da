"""Property-based fuzzing of every operation of the OpenAPI document: no input gives a 5xx."""

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from mtinsar.service import auth, db
from mtinsar.service.app import create_app
from mtinsar.service.db import Job
from mtinsar.service.settings import ServiceConfig

MAX_EXAMPLES = 20  # per operation: the whole run stays well under a minute per database
JOB = "f" * 32
# Path parameters that random strings would almost never hit: sometimes use real ones, so
# that the fuzzing reaches the code behind the 404s (a real job, result files, processes).
KNOWN = {
    "job_id": [JOB],
    "process_id": ["sbas", "update", "infra"],
    "name": ["ann"],  # never the admin's own name: revoking its keys would end the run
    "path": ["velocity.tif", "summary.json", "timeseries.zarr/zarr.json", "report.html"],
    "layer": ["velocity", "velocity_std", "temporal_coherence", "mask"],
}


@pytest.fixture
def fuzzed(database_url, tmp_path, sbas_result):
    """(schema, admin headers) of a fresh app with an admin, a scientist and a finished job."""
    config = ServiceConfig(data_dir=tmp_path / "svc", database_url=database_url)
    (config.data_dir / "inbox").mkdir(parents=True)
    shutil.copytree(sbas_result, config.job_dir(JOB) / "result")
    app = create_app(config)
    with app.state.sessions.begin() as s:
        _, admin = auth.create_user(s, "root", "admin")
        ann, _ = auth.create_user(s, "ann", "scientist")
        s.add(Job(id=JOB, owner_id=ann.id, process_id="sbas", inputs={}, status=db.SUCCESSFUL))
    yield schemathesis.openapi.from_asgi("/openapi.json", app), {"X-API-Key": admin}
    app.state.engine.dispose()


def test_no_operation_answers_a_server_error(fuzzed):
    schema, headers = fuzzed
    operations = [result.ok() for result in schema.get_all_operations()]
    # deletions last: dismissing the known job first would hide its results from the rest
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")
    assert len(operations) >= 20  # the OGC, user, STAC and map operations are all there
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(), data=st.data())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case, data) -> None:
            for name, values in KNOWN.items():
                if name in (case.path_parameters or {}) and data.draw(st.booleans()):
                    case.path_parameters[name] = data.draw(st.sampled_from(values))
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            fuzz()
        except Exception as exc:  # collect every failing operation, not only the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
