"""A static HTTP file server on loopback that honours byte ranges and counts what it sends.

Python's `http.server` ignores the ``Range`` header (it always sends the whole file), so the
handler below adds single-range requests (RFC 9110 §14: ``bytes=first-last``, ``first-``,
``-suffix``; answer 206 with ``Content-Range``, or 416). Folder listings stay the standard
HTML index, which fsspec's HTTP file system parses to list a product folder.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from s3_server import ByteCounter

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    """`SimpleHTTPRequestHandler` plus single byte ranges and a byte count."""

    counter: ByteCounter

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass  # one line per request would bury a failing test's output

    def send_head(self):  # type: ignore[override] - same contract as the base class
        path = self.translate_path(self.path)
        spec = self.headers.get("Range")
        if spec is None or os.path.isdir(path) or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        match = _RANGE.match(spec.strip())
        if match is None or (not match[1] and not match[2]):
            self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "one byte range only")
            return None
        if match[1]:
            first = int(match[1])
            last = min(int(match[2]), size - 1) if match[2] else size - 1
        else:  # suffix range: the last N bytes
            first, last = max(0, size - int(match[2])), size - 1
        if first >= size or last < first:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f = open(path, "rb")  # noqa: SIM115 - closed by the base class after copyfile
        f.seek(first)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        self._remaining = last - first + 1
        return f

    def end_headers(self) -> None:
        if not self.headers.get("Range"):
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def copyfile(self, source, outputfile) -> None:  # type: ignore[override]
        remaining = getattr(self, "_remaining", None)
        while remaining is None or remaining > 0:
            piece = source.read(65536 if remaining is None else min(65536, remaining))
            if not piece:
                break
            self.counter.add(self.command, self.path, len(piece))
            outputfile.write(piece)
            if remaining is not None:
                remaining -= len(piece)
        self._remaining = None


@dataclass
class HttpServer:
    url: str
    counter: ByteCounter


@contextmanager
def serve_folder(root: Path) -> Iterator[HttpServer]:
    """Serve `root` on http://127.0.0.1:<free port>/ until the block ends."""
    counter = ByteCounter()
    handler = type("CountingRangeHandler", (RangeHandler,), {"counter": counter})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield HttpServer(f"http://{host}:{port}", counter)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
