"""A loopback HTTP/1.1 server that replays recorded provider responses (VCR cassettes) byte for byte.

Which recording to answer with is chosen per request by headers, so one server serves every test:

- `x-cassette`: the cassette's path relative to the cassette folder, without `.yaml`
  (e.g. `opentelemetry-python-contrib/openai_chat_completion`). Without it the server picks the first
  interaction whose request path matches.
- `x-cassette-index`: which interaction of the cassette (default 0).
- `x-fake-delay`: seconds to wait before the response headers.
- `x-fake-chunk-delay`: seconds to wait before each SSE event after the first.
- `x-fake-disconnect-after`: send that many SSE events, then drop the connection mid-body.
- `x-fake-status`: override the status code (e.g. 503 with the recorded body).

Bodies go out with chunked transfer encoding, as the real APIs send them; an SSE body is sent one event
per chunk. Headers that describe the recorded transfer (length, encoding) are not replayed.
`requests` keeps every request seen (method, path, headers, body) for assertions.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


def _cassette_dir() -> Path:
    """`$OTEL_LLM_CASSETTES`, else `shared/` beside the repository, else `shared/` inside it."""
    env = os.environ.get("OTEL_LLM_CASSETTES")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for shared in (repo.parent / "shared", repo / "shared"):
        if (shared / "reference" / "cassettes").is_dir():
            return shared / "reference" / "cassettes"
    return repo.parent / "shared" / "reference" / "cassettes"


CASSETTE_DIR = _cassette_dir()
_SKIP_HEADERS = {"content-length", "transfer-encoding", "content-encoding", "connection", "date", "server"}


@dataclass(frozen=True)
class Interaction:
    method: str
    path: str
    request_body: str | None
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def is_sse(self) -> bool:
        return any(k.lower() == "content-type" and "event-stream" in v for k, v in self.headers)

    def events(self) -> list[bytes]:
        """The SSE body cut after each blank line (each piece keeps its terminator)."""
        pieces = self.body.split(b"\n\n")
        out = [p + b"\n\n" for p in pieces[:-1]]
        if pieces[-1]:
            out.append(pieces[-1])
        return out


def load_cassette(path: Path) -> list[Interaction]:
    data = yaml.safe_load(path.read_text())
    out = []
    for item in data["interactions"]:
        req, resp = item["request"], item["response"]
        body = resp["body"]
        text = body.get("string") if isinstance(body, dict) else body
        raw = text.encode() if isinstance(text, str) else (text or b"")
        headers: list[tuple[str, str]] = []
        for key, values in (resp.get("headers") or {}).items():
            if key.lower() in _SKIP_HEADERS:
                continue
            for value in values if isinstance(values, list) else [values]:
                headers.append((key, str(value)))
        if not any(k.lower() == "content-type" for k, _ in headers):
            stripped = raw.lstrip()
            sse = stripped.startswith((b"data:", b"event:"))
            headers.append(
                ("Content-Type", "text/event-stream; charset=utf-8" if sse else "application/json")
            )
        out.append(
            Interaction(
                method=req["method"],
                path=urlsplit(req["uri"]).path,
                request_body=req.get("body"),
                status=int(resp["status"]["code"]),
                headers=headers,
                body=raw,
            )
        )
    return out


def all_cassettes(root: Path = CASSETTE_DIR) -> list[str]:
    return sorted(str(p.relative_to(root))[: -len(".yaml")] for p in root.rglob("*.yaml"))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # Tests open many connections at once; the default backlog of 5 resets some of them.
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-stream on purpose in tests (early close, disconnects); only report the rest.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class CassetteServer:
    """Serves the cassettes in `root` on 127.0.0.1 (ephemeral port). Use as a context manager."""

    def __init__(self, root: Path = CASSETTE_DIR) -> None:
        self.root = root.resolve()
        self._cache: dict[str, list[Interaction]] = {}
        self._lock = threading.Lock()
        self.requests: list[SeenRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    def start(self) -> CassetteServer:
        handler = _make_handler(self)
        httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="cassette-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CassetteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- data ---
    def cassette(self, name: str) -> list[Interaction]:
        with self._lock:
            found = self._cache.get(name)
            if found is None:
                found = load_cassette(self.root / f"{name}.yaml")
                self._cache[name] = found
            return found

    def pick(self, path: str, headers: dict[str, str]) -> Interaction | None:
        name = headers.get("x-cassette")
        if name:
            return self.cassette(name)[int(headers.get("x-cassette-index", "0"))]
        for cassette in all_cassettes(self.root):
            for item in self.cassette(cassette):
                if path.endswith(item.path):
                    return item
        return None


def _make_handler(server: CassetteServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._reply_json(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = urlsplit(self.path).path
            server.requests.append(SeenRequest("POST", self.path, headers, body))
            item = server.pick(path, headers)
            if item is None:
                self._reply_json(404, b'{"error":{"message":"no cassette","code":"no_cassette"}}')
                return
            delay = float(headers.get("x-fake-delay", "0"))
            if delay:
                time.sleep(delay)
            status = int(headers.get("x-fake-status", item.status))
            self.send_response(status)
            for key, value in item.headers:
                self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces: Iterator[bytes] | list[bytes] = item.events() if item.is_sse else [item.body]
            chunk_delay = float(headers.get("x-fake-chunk-delay", "0"))
            disconnect_after = int(headers.get("x-fake-disconnect-after", "-1"))
            for i, piece in enumerate(pieces):
                if i == disconnect_after:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if i and chunk_delay:
                    time.sleep(chunk_delay)
                self._chunk(piece)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _chunk(self, data: bytes) -> None:
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        def _reply_json(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


if __name__ == "__main__":  # pragma: no cover - manual use
    with CassetteServer() as s:
        print(s.url, flush=True)
        threading.Event().wait()
