"""Databases for the service tests: SQLite and a real, throwaway PostgreSQL server.

The PostgreSQL server is started from the binaries `make test` installs (Debian's
postgresql); every test parametrised by `database_url` runs against both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright

from mtinsar.config import RunConfig
from mtinsar.service import db, devdb
from mtinsar.service.app import create_app
from mtinsar.service.settings import ServiceConfig
from mtinsar.simulate import SceneConfig, simulate_scene, write_licsar
from mtinsar.workflows.jobs import run_to_folder

#: The tiny scene of the service tests' results: corner -99.30/19.60, 0.001 deg posting
SCENE = SceneConfig(ny=40, nx=50, n_dates=10, seed=1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on loopback for this test session; yields its base URL."""
    with devdb.postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh, empty database: SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return devdb.create_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def factory(database_url):
    """A session factory on a migrated, empty `database_url`."""
    engine = db.connect(database_url)
    yield db.sessions(engine)
    engine.dispose()


CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make test` (scripts/system-deps.sh)
# no background traffic: this machine reaches no internet, and the tests need none
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page():
    """A page of headless Chromium (Playwright); fails the test on any JavaScript error."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert not errors, f"JavaScript errors: {errors}"
        finally:
            browser.close()


@pytest.fixture(scope="session")
def sbas_result(tmp_path_factory) -> Path:
    """A real sbas result folder of the tiny simulated scene (built once per session)."""
    root = tmp_path_factory.mktemp("sbas")
    write_licsar(simulate_scene(SCENE), root / "frame")
    run_to_folder(root / "frame", root / "result", RunConfig())
    return root / "result"


@pytest.fixture
def service(database_url, tmp_path):
    """(ServiceConfig, TestClient, session factory) of a fresh app; DATA/inbox/frame exists."""
    config = ServiceConfig(data_dir=tmp_path / "svc", database_url=database_url)
    (config.data_dir / "inbox" / "frame").mkdir(parents=True)
    app = create_app(config)
    with TestClient(app) as client:
        yield config, client, app.state.sessions
    app.state.engine.dispose()
