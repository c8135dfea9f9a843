"""``health_check`` extension: HTTP ``/health`` and the gRPC ``grpc.health.v1.Health/Check`` service.

::

    extensions:
      health_check: {endpoint: 127.0.0.1:13133, path: /health}

HTTP answers 200 when the service is ready and not refusing data, and 503 while it is starting,
stopping or refusing (memory limiter over its soft limit), with a JSON body such as
``{"status": "ready", "refusing": false, "reasons": {}, "uptime_s": 12.5}``.

The detail (``refusing``, ``reasons``, ``uptime_s``) is admin information (``collector.auth``): only a
loopback peer or a request with an ``admin``-scoped token (``auth``) gets it; anyone else gets
``{"status": ...}`` and the same status code, which is all a load balancer or kubelet probe needs. So
the endpoint may listen on a routable address for probes (``0.0.0.0:13133``); configuring ``auth``
there (detail for remote admins) also needs ``allow_remote: true``, by the admin-endpoint rule
(:func:`collector.auth.admin_endpoint_problem`). The gRPC health service
is served on each OTLP receiver's gRPC server (the receiver asks extensions for
:meth:`HealthCheckExtension.grpc_generic_handlers`): ``SERVING`` / ``NOT_SERVING`` by the same rule,
for the empty service name and for the OTLP service names. ``grpcio-health-checking`` is not
installed here, so the two tiny messages of ``grpc.health.v1`` are encoded by hand (one string field
in, one enum field out); ``Watch`` is not implemented (clients get UNIMPLEMENTED).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from pydantic import Field

from collector import _httpserver
from collector.auth import (
    AccessControl,
    AdminAccessConfig,
    Decision,
    Scope,
    ScopedAuthenticator,
    admin_endpoint_problem,
    peer_is_loopback,
)
from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind
from collector.logs import event

__all__ = ["FACTORY", "HealthCheckConfig", "HealthCheckExtension"]

_STATUS_KEY = "collector.service.status"
_WORKER_INDEX_KEY = "collector.runner.worker_index"
_SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}
_NOT_SERVING = b"\x08\x02"  # HealthCheckResponse{status: NOT_SERVING}
_KNOWN_SERVICES = frozenset(
    {
        "",
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        "opentelemetry.proto.collector.logs.v1.LogsService",
    }
)


class HealthCheckConfig(ComponentConfig):
    """The ``health_check`` extension."""

    endpoint: str = Field(
        "127.0.0.1:13133", description="host:port of the HTTP health endpoint (port 0: any)."
    )
    path: str = Field("/health", pattern="^/", description="Path that answers; other paths get 404.")
    auth: AdminAccessConfig | None = Field(
        None,
        description="Tokens whose holders (scope `admin`) get the detail (refusal reasons) from a "
        'non-loopback address; loopback peers always get it, others only `{"status": ...}`.',
    )
    allow_remote: bool = Field(
        False,
        description="Allow `auth` on a non-loopback endpoint, so remote admins can read the detail. "
        "Probes need neither: they get the status from any address.",
    )

    def problems(self) -> list[tuple[str, str]]:
        host, sep, port = self.endpoint.rpartition(":")
        if not sep or not host or not port.isdigit():
            return [("endpoint", f"expected host:port, got {self.endpoint!r}")]
        out: list[tuple[str, str]] = []
        if self.auth is not None:
            out.extend((f"auth::{key}", message) for key, message in self.auth.problems())
            scope_problem = self.auth.required_scope_problem(Scope.ADMIN)
            if scope_problem is not None:
                out.append((f"auth::{scope_problem[0]}", scope_problem[1]))
        # Only the detail is admin information; a probe-only endpoint (no auth, no allow_remote) may
        # listen anywhere because remote peers never get the detail from it.
        if self.auth is not None or self.allow_remote:
            problem = admin_endpoint_problem(self.endpoint, allow_remote=self.allow_remote, access=self.auth)
            if problem is not None:
                out.append(problem)
        return out


def _service_name(request: bytes) -> str | None:
    """The ``service`` field (1, string) of a HealthCheckRequest; None when malformed."""
    pos = 0
    name = ""
    while pos < len(request):
        tag = request[pos]
        pos += 1
        if tag != 0x0A:
            return None  # no other field exists in HealthCheckRequest
        length = 0
        shift = 0
        while True:
            if pos >= len(request) or shift > 28:
                return None
            byte = request[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + length > len(request):
            return None
        name = request[pos : pos + length].decode("utf-8", "replace")
        pos += length
    return name


class HealthCheckExtension:
    """Serves the health endpoints; reads the service status holder on each request."""

    def __init__(self, config: HealthCheckConfig, settings: CreateSettings) -> None:
        self.config = config
        self._logger = settings.logger
        self._status: Any = None
        self._auth: ScopedAuthenticator | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started_at = time.monotonic()
        self.port = 0

    def detail_allowed(self, peer: Sequence[object] | str | None, authorization: str | None) -> bool:
        """Whether a request may see the detail: from a loopback peer, or with an ``admin`` token.

        ``peer`` is the client address as ``http.server`` gives it (``(host, port)``) or a gRPC peer
        string; ``authorization`` the value of the configured header (``None`` when absent).
        """
        if peer_is_loopback(peer):
            return True
        auth = self._auth
        return auth is not None and auth.decide(authorization) is Decision.ALLOWED

    def state(self, detail: bool = True) -> tuple[bool, dict[str, Any]]:
        """(healthy, JSON body) from the current service status; without ``detail`` only the status."""
        healthy, body = self._full_state()
        return healthy, body if detail else {"status": body["status"]}

    def _full_state(self) -> tuple[bool, dict[str, Any]]:
        status = self._status
        if status is None:
            return False, {"status": "unknown", "refusing": False, "reasons": {}}
        state = str(status.status)
        refusing = bool(status.refusing)
        healthy = state == "ready" and not refusing
        return healthy, {
            "status": state,
            "refusing": refusing,
            "reasons": dict(status.reasons),
            "uptime_s": round(time.monotonic() - self._started_at, 3),
        }

    def start(self, host: Host) -> None:
        if self._server is not None:
            return
        self._status = host.shared.get(_STATUS_KEY)
        self._auth = (
            AccessControl.from_config(self.config.auth).authenticator(Scope.ADMIN)
            if self.config.auth is not None
            else None
        )
        address, _, port_text = self.config.endpoint.rpartition(":")
        port = int(port_text)
        worker = host.shared.get(_WORKER_INDEX_KEY)
        if isinstance(worker, int) and port != 0:
            port += worker  # with service::workers each worker answers on its own port (13133, 13134, ...)
        extension = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != extension.config.path:
                    body = b'{"error": "not found"}'
                    code = 404
                else:
                    header = extension._auth.header if extension._auth is not None else "authorization"
                    detail = extension.detail_allowed(self.client_address, self.headers.get(header))
                    healthy, state = extension.state(detail)
                    body = json.dumps(state).encode()
                    code = 200 if healthy else 503
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = _httpserver.bind(
            lambda: ThreadingHTTPServer((address.strip("[]"), port), Handler),
            "health_check",
            f"{address}:{port}",
        )
        self._server = server
        self.port = server.server_address[1]
        self._thread = _httpserver.serve(server, "health-check", poll_interval=0.2)
        event(
            self._logger,
            logging.INFO,
            "health check listening",
            endpoint=self.config.endpoint,
            port=self.port,
        )

    def shutdown(self, timeout_s: float) -> None:
        server, self._server = self._server, None
        if server is not None:
            _httpserver.stop(server)
        if self._thread is not None:
            self._thread.join(max(timeout_s, 0.1))
            self._thread = None

    def grpc_generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        """``grpc.health.v1.Health/Check`` for the OTLP receivers' gRPC servers."""

        def check(request: bytes, context: grpc.ServicerContext) -> bytes:
            service = _service_name(request)
            if service is None:
                context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
                context.set_details("malformed HealthCheckRequest")
                return b""
            if service not in _KNOWN_SERVICES:
                context.set_code(grpc.StatusCode.NOT_FOUND)
                context.set_details(f"unknown service {service!r}")
                return b""
            healthy, _ = self.state()
            return _SERVING if healthy else _NOT_SERVING

        handler: Callable[[bytes, grpc.ServicerContext], bytes] = check
        return [
            grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(handler)}
            )
        ]


def _create(config: HealthCheckConfig, settings: CreateSettings) -> HealthCheckExtension:
    return HealthCheckExtension(config, settings)


FACTORY = Factory(
    kind=Kind.EXTENSION,
    type_name="health_check",
    config_type=HealthCheckConfig,
    create=_create,
    description="HTTP /health and grpc.health.v1 Check: healthy when ready and not refusing data.",
)
