"""Databases for the service tests: SQLite and a real, throwaway PostgreSQL server.

The PostgreSQL server is started from the binaries `make test` installs (Debian's
postgresql); every test parametrised by `database_url` runs against both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from mtinsar.service import db, devdb


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
