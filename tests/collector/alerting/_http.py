"""A loopback HTTP server that records requests and answers from a script: stands in for PagerDuty,
Slack, webhook receivers and Alertmanager's webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """Requests received, and the statuses to answer with (then 200 or 202 forever)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default_status: int = 202
    body: bytes = b""
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout_s: float = 10.0, path: str | None = None) -> list[Recorded]:
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while True:
                found = [r for r in self.requests if path is None or r.path == path]
                if len(found) >= count or time.monotonic() >= deadline:
                    return found
                self.arrived.wait(max(0.0, deadline - time.monotonic()))


@contextmanager
def recording_server(on_request: Callable[[Recorded], None] | None = None) -> Iterator[Recorder]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            item = Recorded(
                self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
            )
            with recorder.lock:
                status = recorder.statuses.pop(0) if recorder.statuses else recorder.default_status
            if on_request:
                on_request(item)
            with recorder.arrived:
                recorder.requests.append(item)
                recorder.arrived.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(recorder.body)))
            self.end_headers()
            self.wfile.write(recorder.body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
