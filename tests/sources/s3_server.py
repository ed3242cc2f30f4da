"""A real S3-compatible server (moto's server mode) on loopback, counting the bytes it sends.

Shared by the object-storage tests (`tests/sources/test_remote.py`, `tests/test_stack_s3.py`).
The count wraps moto's WSGI application, so it sees every response body the store sends
(listings, HEADs, ranged GETs) to every client, s3fs and GDAL alike.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from moto.server import ThreadedMotoServer

ACCESS_KEY = "testing"
SECRET_KEY = "testing"


@dataclass
class ByteCounter:
    """Bytes of response bodies sent by the server, and the requests that sent them."""

    sent: int = 0
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.sent = 0
            self.requests.clear()

    def add(self, method: str, path: str, n: int) -> None:
        with self.lock:
            self.sent += n
            self.requests.append((method, path, n))

    def by_path(self) -> dict[str, int]:
        """Bytes sent per request path."""
        out: dict[str, int] = {}
        with self.lock:
            for _, path, n in self.requests:
                out[path] = out.get(path, 0) + n
        return out


class _Counting:
    """WSGI middleware adding the length of every response body to a ByteCounter."""

    def __init__(self, app, counter: ByteCounter) -> None:
        self.app, self.counter = app, counter

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        request = (environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        try:
            for piece in body:
                # Counted before the bytes go out, so a client never sees them uncounted.
                self.counter.add(*request, len(piece))
                yield piece
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


@dataclass
class S3Server:
    endpoint: str
    counter: ByteCounter


@contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 (a free port) with credentials in the environment."""
    # One log line per request would bury a failing test's own output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    counter = ByteCounter()
    wsgi = server._server  # werkzeug server: the app it serves is wrapped to count bytes
    wsgi.app = _Counting(wsgi.app, counter)
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its buckets per process, not per server: start every test from empty.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_NO_SIGN_REQUEST", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield S3Server(endpoint, counter)
    finally:
        server.stop()


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_bucket(server: S3Server, name: str) -> None:
    """Create bucket `name` on the server (boto3, as a user would with `aws s3 mb`)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
