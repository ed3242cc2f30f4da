"""Throwaway servers on loopback (PostgreSQL, the app) for trials, tests and benchmarks.

Uses the server binaries of the machine (Debian's postgresql package: `make test` installs
it). Production deployments point `--db` at a managed PostgreSQL instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from mtinsar.errors import InputError


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise InputError(f"PostgreSQL's {name} is missing: install postgresql (`make sysdeps`)")
    return found


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the package's `postgres` user
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def free_port() -> int:
    """A TCP port free on loopback now (for a server about to start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a fresh PostgreSQL cluster on a free loopback port; yields its base URL.

    The URL has no database name: append `/postgres` or one made by `create_database`.
    The cluster and its files are removed when the block ends.
    """
    root = Path(tempfile.mkdtemp(prefix="mtinsar-pg-"))
    root.chmod(0o777)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    try:
        subprocess.run(
            _as_postgres([_binary("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = [_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log")]
        subprocess.run(_as_postgres([*pg_ctl, "-w", "start"]), check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: str) -> str:
    """A new empty database on `server` (a URL from `postgres_server`); its URL."""
    name = f"mtinsar_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return f"{server}/{name}"


@contextlib.contextmanager
def serve_in_thread(app: Any, timeout: float = 20.0) -> Iterator[str]:
    """Serve the ASGI `app` with uvicorn in a thread on a free loopback port; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
