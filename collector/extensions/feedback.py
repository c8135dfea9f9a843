"""``feedback`` extension: ``POST /v1/feedback`` for user feedback, joined to GenAI spans.

Configured like::

    extensions:
      feedback:
        endpoint: 127.0.0.1:4320
        auth: {tokens: ["${env:FEEDBACK_TOKEN}"]}
        join_window: 5m
    service:
      extensions: [feedback]
    processors:
      quality: {}          # fills the join index from the traces pipeline

Request (one object, or an array of up to ``max_items``)::

    POST /v1/feedback
    Authorization: Bearer <token>
    {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "kind": "thumbs", "value": "up", "comment": "great"}

Answers: ``202 {"accepted": 1, "joined": 1, "pending": 0}``; ``400 {"error": "<reason>"}`` for bad
JSON, unknown fields, bad ids or values (nothing of that request is kept); ``401`` without a known
token, ``403`` for a known token without the ``feedback`` scope (``auth``: ``collector.auth``);
``413`` over ``max_body_kib``; ``404``/``405`` for other paths and methods.

The extension owns the :class:`~collector.quality.FeedbackIndex` (shared as
``collector.quality.feedback_index``); the ``quality`` processor adds response spans to it. A
housekeeping thread expires pending feedback (counted as unjoined) and refreshes the coverage and
positive-rate gauges every ``refresh_interval``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import Field, ValidationError

from collector import _httpserver
from collector.auth import AccessControl, Decision, FeedbackAccessConfig, Scope, ScopedAuthenticator
from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind
from collector.durations import Duration
from collector.metrics import MetricStore, shared_store
from collector.quality import _labels as names
from collector.quality._feedback import FeedbackIndex, FeedbackRequest
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

__all__ = ["FACTORY", "FeedbackExtension", "FeedbackExtensionConfig"]

PATH = "/v1/feedback"
_Reject = attrs.OtelLlmFeedbackRejectReasonValues


class FeedbackExtensionConfig(ComponentConfig):
    """``feedback`` extension settings."""

    endpoint: str = Field("127.0.0.1:4320", description="host:port to listen on (port 0: any free port).")
    auth: FeedbackAccessConfig | None = Field(
        None,
        description="Require a bearer token with the `feedback` scope (plain string tokens get it); "
        "see docs/security.md.",
    )
    max_body_kib: int = Field(64, gt=0, description="Largest request body.")
    max_items: int = Field(100, gt=0, description="Most feedback items in one request (JSON array).")
    join_window: Duration = Field(
        300.0, description="How long feedback waits for its span before it counts as unjoined."
    )
    retention: Duration = Field(
        1800.0, description="How long response spans stay joinable (and count towards coverage)."
    )
    max_spans: int = Field(100_000, gt=0, description="Response spans held in the join index.")
    max_pending: int = Field(10_000, gt=0, description="Feedback items waiting for their span.")
    refresh_interval: Duration = Field(10.0, description="How often expiry runs and gauges are refreshed.")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        host, sep, port = self.endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            out.append(("endpoint", f"expected host:port, got {self.endpoint!r}"))
        if self.refresh_interval <= 0:
            out.append(("refresh_interval", "expected a duration above zero"))
        if self.auth is not None:
            out.extend((f"auth::{key}", message) for key, message in self.auth.problems())
            scope_problem = self.auth.required_scope_problem(Scope.FEEDBACK)
            if scope_problem is not None:
                out.append((f"auth::{scope_problem[0]}", scope_problem[1]))
        return out


def _reason(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown field {where!r}"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    extension: FeedbackExtension


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Slow or stuck clients must not hold a handler thread for long.
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; outcomes are counted instead."""

    def _reply(self, status: int, body: dict[str, object], **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        extension = self.server.extension
        if self.path.split("?", 1)[0] != PATH:
            self._drain()
            self._reply(404, {"error": f"no such path; POST feedback to {PATH}"})
            return
        auth = extension.authenticator
        decision = auth.decide(self.headers.get(auth.header)) if auth is not None else Decision.ALLOWED
        if decision is Decision.UNAUTHENTICATED:
            self._drain()
            extension.count_rejected(_Reject.UNAUTHENTICATED)
            self._reply(401, {"error": "missing or invalid bearer token"}, WWW_Authenticate="Bearer")
            return
        if decision is Decision.FORBIDDEN:
            self._drain()
            extension.count_rejected(_Reject.FORBIDDEN)
            self._reply(403, {"error": "the bearer token does not have the feedback scope"})
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            extension.count_rejected(_Reject.INVALID)
            self.close_connection = True
            self._reply(411, {"error": "Content-Length is required"})
            return
        length = int(length_text)
        if length > extension.config.max_body_kib * 1024:
            extension.count_rejected(_Reject.TOO_LARGE)
            self.close_connection = True
            self._reply(413, {"error": f"body larger than {extension.config.max_body_kib} KiB"})
            return
        body = self.rfile.read(length)
        try:
            status, reply = extension.handle(body)
        except (
            Exception
        ):  # a bug of ours: answer 500 rather than drop the connection; logged once per request
            extension.logger.log(logging.WARNING, "feedback request failed", exc_info=True)
            status, reply = 500, {"error": "internal error"}
            self.close_connection = True
        self._reply(status, reply)

    def _drain(self) -> None:
        length_text = self.headers.get("Content-Length", "0")
        length = int(length_text) if length_text.isdigit() else 0
        if length > self.server.extension.config.max_body_kib * 1024:
            self.close_connection = True
            return
        if length:
            self.rfile.read(length)

    def _not_allowed(self) -> None:
        self._drain()
        self._reply(405, {"error": f"use POST {PATH}"}, Allow="POST")

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed


class FeedbackExtension:
    """Serves the feedback endpoint and owns the join index; thread-safe."""

    def __init__(self, config: FeedbackExtensionConfig, settings: CreateSettings) -> None:
        self.config = config
        self.logger = settings.logger
        self.authenticator: ScopedAuthenticator | None = None
        self.index: FeedbackIndex | None = None
        self.store: MetricStore | None = None
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.address: tuple[str, int] | None = None

    def start(self, host: Host) -> None:
        """Create and share the index, listen, and start the housekeeping thread."""
        if self._server is not None:
            return
        self.store = shared_store(host)
        self.authenticator = (
            AccessControl.from_config(self.config.auth).authenticator(Scope.FEEDBACK)
            if self.config.auth is not None
            else None
        )
        self.index = FeedbackIndex(
            self.store,
            join_window_s=self.config.join_window,
            retention_s=self.config.retention,
            max_spans=self.config.max_spans,
            max_pending=self.config.max_pending,
        )
        host.shared[names.FEEDBACK_INDEX_KEY] = self.index
        bind_host, _, port = self.config.endpoint.rpartition(":")
        server = _httpserver.bind(
            lambda: _Server((bind_host.strip("[]"), int(port)), _Handler),
            "extensions::feedback",
            self.config.endpoint,
        )
        server.extension = self
        self._server = server
        self.address = (str(server.server_address[0]), int(server.server_address[1]))
        self._stop.clear()
        housekeeping = threading.Thread(target=self._housekeeping, name="feedback-housekeeping", daemon=True)
        self._threads = [_httpserver.serve(server, "feedback-http", poll_interval=0.2), housekeeping]
        housekeeping.start()

    def shutdown(self, timeout_s: float) -> None:
        """Stop listening and the housekeeping thread; count pending feedback as unjoined after a last sweep."""
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            _httpserver.stop(server)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        if self.index is not None:
            self.index.sweep()
            self.index.export_gauges()

    def _housekeeping(self) -> None:
        while not self._stop.wait(self.config.refresh_interval):
            self.refresh()

    def refresh(self) -> None:
        """Expire pending feedback and refresh gauges now (the thread does this every interval)."""
        if self.index is not None:
            self.index.sweep()
            self.index.export_gauges()

    def count_rejected(self, reason: str) -> None:
        if self.store is not None:
            self.store.counter(m.OTEL_LLM_FEEDBACK_REJECTED, (attrs.OTEL_LLM_FEEDBACK_REJECT_REASON,)).add(
                ((), (reason,)), 1.0, time.time_ns()
            )

    def handle(self, body: bytes) -> tuple[int, dict[str, object]]:
        """Validate and submit one request body; returns (status, JSON reply)."""
        assert self.index is not None
        try:
            payload = json.loads(body)
        except ValueError as exc:
            self.count_rejected(_Reject.INVALID)
            return 400, {"error": f"body is not JSON: {exc}"}
        except RecursionError:
            # Deeply nested arrays or objects (a 64 KiB body of "[") exhaust the parser's recursion limit.
            self.count_rejected(_Reject.INVALID)
            return 400, {"error": "body is not JSON: nested too deeply"}
        raw_items = payload if isinstance(payload, list) else [payload]
        if not raw_items:
            self.count_rejected(_Reject.INVALID)
            return 400, {"error": "empty array"}
        if len(raw_items) > self.config.max_items:
            self.count_rejected(_Reject.INVALID)
            return 400, {"error": f"more than {self.config.max_items} items in one request"}
        items: list[FeedbackRequest] = []
        for position, raw in enumerate(raw_items):
            if not isinstance(raw, dict):
                self.count_rejected(_Reject.INVALID)
                return 400, {"error": f"item {position}: expected a JSON object"}
            try:
                items.append(FeedbackRequest.model_validate(raw))
            except ValidationError as exc:
                self.count_rejected(_Reject.INVALID)
                prefix = f"item {position}: " if isinstance(payload, list) else ""
                return 400, {"error": prefix + _reason(exc)}
        joined = 0
        for item in items:
            if self.index.submit(item).status == "joined":
                joined += 1
        return 202, {"accepted": len(items), "joined": joined, "pending": len(items) - joined}


def _create(config: FeedbackExtensionConfig, settings: CreateSettings) -> FeedbackExtension:
    return FeedbackExtension(config, settings)


FACTORY = Factory(
    kind=Kind.EXTENSION,
    type_name="feedback",
    config_type=FeedbackExtensionConfig,
    create=_create,
    description="User feedback endpoint (POST /v1/feedback) joined to GenAI spans by trace, span or response id.",
)
