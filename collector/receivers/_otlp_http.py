"""OTLP over HTTP/1.1 with the standard library's ``ThreadingHTTPServer``: one thread per connection.

Why the standard library: no dependency, HTTP/1.1 keep-alive works, and the body handling the OTLP
rules need (length required or chunked, streaming decompression with a cap, refusing before the body
is read) is a few dozen lines on top of it. The GIL makes an event loop no faster for this CPU-bound
work. Every request and connection is bounded: ``Content-Length`` (or chunked framing) is required,
the body is capped before and after decompression, and idle keep-alive connections time out.

Status codes follow the OTLP specification (see :mod:`._intake`); error bodies are a
``google.rpc.Status`` in the request's content type, and ``503`` carries ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import ssl
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2  # type: ignore[import-untyped]

from collector import _httpserver
from collector.auth import ScopedAuthenticator
from collector.component import Signal
from collector.errors import ComponentError
from collector.logs import event
from collector.receivers._intake import Intake, Outcome, OutcomeKind, ServerTLSSettings
from otel_llm.conventions import attributes as attrs

__all__ = ["HttpTransport"]

TRANSPORT = "http"
PATHS = {"/v1/traces": Signal.TRACES, "/v1/metrics": Signal.METRICS, "/v1/logs": Signal.LOGS}
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
# Content-Encoding -> zlib window bits (31: gzip wrapper, 15: zlib wrapper, HTTP's "deflate").
_ENCODINGS = {"": 0, "identity": 0, "gzip": 31, "x-gzip": 31, "deflate": 15}
_BUSY = -1.0  # connections-map value of a connection serving a request
# Lingering close: how much of an unread body is drained, and for how long, before closing.
_LINGER_BYTES = 64 * 1024 * 1024
_LINGER_S = 2.0
_STATUS = {
    OutcomeKind.INVALID: (400, code_pb2.INVALID_ARGUMENT),
    OutcomeKind.TOO_LARGE: (413, code_pb2.RESOURCE_EXHAUSTED),
    OutcomeKind.REFUSED: (503, code_pb2.UNAVAILABLE),
    OutcomeKind.UNAUTHENTICATED: (401, code_pb2.UNAUTHENTICATED),
    OutcomeKind.FORBIDDEN: (403, code_pb2.PERMISSION_DENIED),
    OutcomeKind.UNIMPLEMENTED: (404, code_pb2.UNIMPLEMENTED),
    OutcomeKind.INTERNAL: (500, code_pb2.INTERNAL),
}


class _TooLarge(Exception):
    pass


class _BadBody(Exception):
    pass


def decompress(data: bytes, wbits: int, cap: int) -> bytes:
    """Inflate ``data`` without ever holding more than ``cap`` + 1 bytes: a gzip bomb stops at the cap."""
    inflater = zlib.decompressobj(wbits=wbits)
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error as exc:
        raise _BadBody(f"cannot decompress the body: {exc}") from None
    if len(out) > cap:
        raise _TooLarge
    if not inflater.eof:
        raise _BadBody("cannot decompress the body: it is truncated")
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], transport: HttpTransport, reuse_port: bool, tls: ssl.SSLContext | None
    ) -> None:
        self.transport = transport
        self.reuse_port = reuse_port
        self.tls = tls
        # connection -> when it started waiting for a request (line and headers), or _BUSY
        self.connections: dict[socket.socket, float] = {}
        self.connections_lock = threading.Lock()
        self.evicted = 0
        self.open_connections = 0  # accepted and not finished, counted on the accept thread
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake runs in the connection's own thread (``_Handler.setup``), so a slow or
            # hostile client cannot stall the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per connection, at most max_connections. At the cap, the connection that has
        # waited longest for a request head (idle keep-alive, or a client trickling its headers:
        # slowloris) makes room; only when every connection is busy with a request is the new one closed.
        victim = None
        with self.connections_lock:
            full = self.open_connections >= self.transport.max_connections
            if full:
                waiting = [(since, conn) for conn, since in self.connections.items() if since != _BUSY]
                if waiting:
                    victim = min(waiting, key=lambda item: item[0])[1]
                    self.connections[victim] = _BUSY  # not chosen twice
                    self.evicted += 1
            if not full or victim is not None:
                self.open_connections += 1
        if victim is not None:
            with contextlib.suppress(OSError):
                victim.shutdown(socket.SHUT_RDWR)
        elif full:
            self.transport.refused_connection()
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self.open_connections -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Broken connections and failed TLS handshakes are the client's business; keep stderr clean.
        self.transport.logger.debug("connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.transport.idle_timeout_s)
        self._mark(waiting=True)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def _mark(self, waiting: bool) -> None:
        with self.server.connections_lock:
            self.server.connections[self.connection] = time.monotonic() if waiting else _BUSY

    def handle_one_request(self) -> None:
        self._mark(waiting=True)
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if parsed:
            self._mark(waiting=False)  # the head is in: no longer a candidate for eviction
        return parsed

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.pop(self.connection, None)
        with contextlib.suppress(OSError):
            super().finish()

    body_read = False

    def do_POST(self) -> None:
        self.body_read = False
        self.server.transport.serve(self)
        if self.close_connection and not self.body_read:
            self.server.transport.linger(self)

    def do_GET(self) -> None:
        self._not_allowed()

    def do_PUT(self) -> None:
        self._not_allowed()

    def do_DELETE(self) -> None:
        self._not_allowed()

    def _not_allowed(self) -> None:
        self.server.transport.reply_text(self, 405, "only POST is supported", close=True, allow="POST")

    def log_message(self, format: str, *args: Any) -> None:
        # No access log: one line per request would be one line per batch.
        return


class HttpTransport:
    """The HTTP side of one OTLP receiver."""

    def __init__(
        self,
        intake: Intake,
        endpoint: tuple[str, int],
        *,
        tls: ServerTLSSettings | None,
        auth: ScopedAuthenticator | None,
        idle_timeout_s: float,
        body_timeout_s: float,
        max_connections: int,
        logger: logging.Logger,
    ) -> None:
        self.body_timeout_s = body_timeout_s
        self._intake = intake
        self.max_connections = max_connections
        self._endpoint = endpoint
        self._tls = tls
        self._auth = auth
        self.idle_timeout_s = idle_timeout_s
        self.logger = logger
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self, reuse_port: bool) -> None:
        intake = self._intake
        intake.counters(TRANSPORT)
        context = _server_context(self._tls) if self._tls is not None else None
        try:
            server = _Server(self._endpoint, self, reuse_port, context)
        except OSError as exc:
            host, port = self._endpoint
            raise ComponentError(f"cannot listen on {host}:{port} (HTTP): {exc}") from exc
        self._server = server
        self.port = server.server_address[1]
        self._thread = _httpserver.serve(server, f"otlp-http-{intake.receiver_id}", poll_interval=0.2)
        event(
            self.logger,
            logging.INFO,
            "receiver listening",
            receiver=intake.receiver_id,
            transport=TRANSPORT,
            endpoint=f"{self._endpoint[0]}:{self._endpoint[1]}",
            port=self.port,
            tls=self._tls is not None,
            auth=self._auth is not None,
        )

    def stop_accepting(self) -> None:
        """Close the listening socket; connections already open keep being served."""
        server = self._server
        if server is not None:
            _httpserver.stop(server)
            if self._thread is not None:
                self._thread.join(2.0)

    def close_connections(self) -> None:
        """Close every remaining connection (call after in-flight requests drained)."""
        server, self._server = self._server, None
        if server is None:
            return
        with server.connections_lock:
            connections = list(server.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def refused_connection(self) -> None:
        """A connection over ``max_connections`` was closed unread; counted as a refused request."""
        self._intake.count_request(TRANSPORT, attrs.OutcomeValues.REFUSED)

    # -- one request --------------------------------------------------------------------------------

    def serve(self, h: _Handler) -> None:
        intake = self._intake
        signal = PATHS.get(h.path.split("?", 1)[0])
        if signal is None:
            self.reply_text(
                h, 404, f"unknown path {h.path!r}; expected one of {', '.join(PATHS)}", close=True
            )
            return
        json_body = False
        ctype = (h.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype == _JSON:
            json_body = True
        elif ctype != _PROTOBUF:
            denied = self._denied(h)
            if denied is not None:
                self._reply_outcome(h, denied, json_body, close=True)
                return
            self.reply_text(
                h, 415, f"unsupported content type {ctype!r}; use {_PROTOBUF} or {_JSON}", close=True
            )
            return
        denied = self._denied(h)
        if denied is not None:
            self._reply_outcome(h, denied, json_body, close=True)
            return
        encoding = (h.headers.get("Content-Encoding") or "").strip().lower()
        wbits = _ENCODINGS.get(encoding)
        if wbits is None:
            self.reply_text(
                h, 415, f"unsupported content encoding {encoding!r}; use gzip, deflate or none", close=True
            )
            return
        chunked = "chunked" in (h.headers.get("Transfer-Encoding") or "").lower()
        length_text = h.headers.get("Content-Length")
        cap = intake.max_request_bytes
        if chunked:
            length = cap  # unknown until read; reserve the most it may be
        elif length_text is None:
            self.reply_text(h, 411, "Content-Length or chunked transfer encoding is required", close=True)
            return
        else:
            try:
                length = int(length_text)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.reply_text(h, 400, f"invalid Content-Length {length_text!r}", close=True)
                return
            if length > cap:
                self._reply_outcome(h, intake.too_large(TRANSPORT, signal, length), json_body, close=True)
                return

        reason, refused = intake.admit(TRANSPORT, signal, length)
        if refused is not None:
            # Read the body (bounded, and about to arrive anyway) so the connection stays usable and
            # the refused items are counted; it is never decoded.
            payload: bytes | None = None
            try:
                raw = self._read_body(h, chunked, length, cap)
                payload = decompress(raw, wbits, cap) if wbits else raw
            except (_TooLarge, _BadBody, OSError):
                h.close_connection = True
            intake.refused_before_decode(TRANSPORT, signal, reason, payload)
            self._reply_outcome(h, refused, json_body, close=h.close_connection)
            return
        try:
            try:
                body = self._read_body(h, chunked, length, cap)
                if wbits:
                    body = decompress(body, wbits, cap)
            except _TooLarge:
                self._reply_outcome(h, intake.too_large(TRANSPORT, signal, None), json_body, close=True)
                return
            except _BadBody as exc:
                intake.count_request(TRANSPORT, attrs.OutcomeValues.FAILURE)
                self._reply_outcome(h, Outcome(OutcomeKind.INVALID, str(exc)), json_body, close=True)
                return
            except OSError:
                h.close_connection = True
                return
            outcome = intake.handle(TRANSPORT, signal, body, json_body)
        finally:
            intake.release(length)
        self._reply_outcome(h, outcome, json_body)

    def linger(self, h: _Handler) -> None:
        """Read and discard a body we answered without reading (413, 401, 415, ...), for a while.

        Closing with unread data makes the kernel reset the connection, and a client still sending
        gets EPIPE instead of our answer; so, like web servers' lingering close, take up to
        ``_LINGER_BYTES`` or ``_LINGER_S`` of it first, in small pieces, never kept.
        """
        try:
            remaining = min(int(h.headers.get("Content-Length") or 0), _LINGER_BYTES)
        except ValueError:
            return
        deadline = time.monotonic() + _LINGER_S
        try:
            h.connection.settimeout(_LINGER_S)
            while remaining > 0 and time.monotonic() < deadline:
                chunk = h.rfile.read1(min(65536, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
        except OSError:
            return

    def _read_body(self, h: _Handler, chunked: bool, length: int, cap: int) -> bytes:
        """The whole body, within ``body_timeout`` in total (a client trickling it cannot hold a thread)."""
        h.body_read = True
        deadline = time.monotonic() + self.body_timeout_s
        try:
            if not chunked:
                return _read_exact(h, length, deadline)
            parts: list[bytes] = []
            total = 0
            while True:
                _arm(h, deadline)
                line = h.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadBody("malformed chunked encoding") from None
                if size == 0:
                    while h.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        _arm(h, deadline)  # trailers are ignored
                    return b"".join(parts)
                total += size
                if total > cap:
                    raise _TooLarge
                parts.append(_read_exact(h, size, deadline))
                h.rfile.readline(3)
        finally:
            with contextlib.suppress(OSError):
                h.connection.settimeout(self.idle_timeout_s)

    def _denied(self, h: _Handler) -> Outcome | None:
        """The 401 or 403 outcome when auth is on and the request's token does not let it in."""
        auth = self._auth
        if auth is None:
            return None
        return self._intake.check_access(TRANSPORT, auth, h.headers.get(auth.header))

    def _reply_outcome(self, h: _Handler, outcome: Outcome, json_body: bool, close: bool = False) -> None:
        if outcome.kind is OutcomeKind.OK:
            assert outcome.response is not None
            self._reply_message(h, 200, outcome.response, json_body, close=close)
            return
        status, code = _STATUS[outcome.kind]
        headers: dict[str, str] = {}
        if outcome.kind is OutcomeKind.REFUSED:
            headers["Retry-After"] = str(max(1, math.ceil(outcome.retry_after_s)))
        if outcome.kind is OutcomeKind.UNAUTHENTICATED:
            headers["WWW-Authenticate"] = "Bearer"
        body = status_pb2.Status(code=code, message=outcome.message)
        self._reply_message(h, status, body, json_body, close=close, **headers)

    def _reply_message(
        self, h: _Handler, status: int, message: Message, json_body: bool, close: bool, **headers: str
    ) -> None:
        if json_body:
            data = json_format.MessageToJson(message, indent=None).encode()
            self._send(h, status, _JSON, data, close, headers)
        else:
            self._send(h, status, _PROTOBUF, message.SerializeToString(), close, headers)

    def reply_text(self, h: _Handler, status: int, text: str, close: bool, **headers: str) -> None:
        """Plain-text answer, for requests that are not OTLP at all (wrong path, method, content type)."""
        self._send(h, status, "text/plain; charset=utf-8", text.encode(), close, headers)

    def _send(
        self, h: _Handler, status: int, ctype: str, data: bytes, close: bool, headers: dict[str, str]
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                h.send_header(name.replace("_", "-"), value)
            if close:
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            h.close_connection = True


def _arm(h: _Handler, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OSError("the body did not arrive within body_timeout")
    h.connection.settimeout(remaining)


def _read_exact(h: _Handler, size: int, deadline: float) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:
        _arm(h, deadline)
        chunk = h.rfile.read1(min(size - got, 1 << 20))
        if not chunk:
            raise OSError("connection closed before the body was complete")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _server_context(tls: ServerTLSSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            context.load_verify_locations(tls.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ComponentError(f"cannot load TLS files: {exc}") from exc
    return context
