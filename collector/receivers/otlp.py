"""``otlp`` receiver: OTLP over gRPC and HTTP, traces with metrics and logs passed through.

Configured like the OpenTelemetry Collector's::

    receivers:
      otlp:
        protocols:
          grpc: {endpoint: 127.0.0.1:4317}
          http: {endpoint: 127.0.0.1:4318}
        max_request_size_mib: 20
        max_inflight_mib: 256
        max_concurrent_requests: 64

Leaving a protocol out disables it; ``grpc: {}`` enables it with defaults. Both listen on loopback
unless told otherwise. Backpressure (memory limiter, full exporter queue, in-flight budget) answers
``UNAVAILABLE`` + RetryInfo / ``503`` + ``Retry-After`` so standard OTLP exporters retry; see
:mod:`collector.receivers._intake` for the full status table. With ``service::workers`` > 1 the
runner sets ``collector.runner.reuse_port`` in the host's shared state and both transports bind
with ``SO_REUSEPORT``; otherwise a port in use is an error at start, not a silently shared port.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from collector.auth import AccessConfig, AccessControl, Scope, ScopedAuthenticator
from collector.component import ComponentConfig, Consumer, CreateSettings, Factory, Host, Kind, Signal
from collector.durations import Duration
from collector.receivers._intake import Intake, ServerTLSSettings
from collector.receivers._otlp_grpc import GrpcTransport
from collector.receivers._otlp_http import HttpTransport

__all__ = ["FACTORY", "GrpcSettings", "HttpSettings", "OtlpReceiver", "OtlpReceiverConfig", "Protocols"]

REUSE_PORT_KEY = "collector.runner.reuse_port"
_MIB = 1024 * 1024


def _check_endpoint(endpoint: str) -> str | None:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return f"expected host:port, got {endpoint!r}"
    return None


def _transport_problems(endpoint: str, auth: AccessConfig | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    problem = _check_endpoint(endpoint)
    if problem:
        out.append(("endpoint", problem))
    if auth is not None:
        out.extend((f"auth::{key}", message) for key, message in auth.problems())
        scope_problem = auth.required_scope_problem(Scope.INGEST)
        if scope_problem is not None:
            out.append((f"auth::{scope_problem[0]}", scope_problem[1]))
    return out


def _authenticator(auth: AccessConfig | None) -> ScopedAuthenticator | None:
    """The ingest check for one transport; reads token files (call at start)."""
    return AccessControl.from_config(auth).authenticator(Scope.INGEST) if auth is not None else None


class GrpcSettings(ComponentConfig):
    """``protocols::grpc``."""

    endpoint: str = Field("127.0.0.1:4317", description="host:port to listen on (port 0: any free port).")
    max_threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="Threads serving calls. 0: max_concurrent_requests + 8, so calls over that limit are "
        "refused at once (UNAVAILABLE + RetryInfo) instead of waiting unseen in grpc's queue.",
    )
    tls: ServerTLSSettings | None = Field(None, description="Serve TLS (and mTLS with `client_ca_file`).")
    auth: AccessConfig | None = Field(
        None, description="Require a bearer token with the `ingest` scope (see docs/security.md)."
    )

    def problems(self) -> list[tuple[str, str]]:
        return _transport_problems(self.endpoint, self.auth)


class HttpSettings(ComponentConfig):
    """``protocols::http``."""

    endpoint: str = Field("127.0.0.1:4318", description="host:port to listen on (port 0: any free port).")
    idle_timeout: Duration = Field(
        60.0, description="Close a keep-alive connection idle this long (also the limit of one read)."
    )
    body_timeout: Duration = Field(
        60.0, gt=0, description="Time to receive one request body in full; a slower client is disconnected."
    )
    max_connections: int = Field(
        256,
        ge=1,
        description="Open connections (one thread each). At the cap the connection waiting longest for a "
        "request head (idle keep-alive, slow headers) is closed to make room; when all are busy, the new one.",
    )
    tls: ServerTLSSettings | None = Field(None, description="Serve TLS (and mTLS with `client_ca_file`).")
    auth: AccessConfig | None = Field(
        None, description="Require a bearer token with the `ingest` scope (see docs/security.md)."
    )

    def problems(self) -> list[tuple[str, str]]:
        return _transport_problems(self.endpoint, self.auth)


class Protocols(ComponentConfig):
    """``protocols``: the transports to serve; a missing one is off."""

    grpc: GrpcSettings | None = Field(None, description="OTLP/gRPC; `{}` for the defaults.")
    http: HttpSettings | None = Field(
        None, description="OTLP/HTTP (protobuf and JSON); `{}` for the defaults."
    )


class OtlpReceiverConfig(ComponentConfig):
    """The ``otlp`` receiver."""

    protocols: Protocols = Field(
        default_factory=lambda: Protocols(grpc=GrpcSettings(), http=HttpSettings()),
        description="Transports; by default both, on loopback.",
    )
    max_request_size_mib: float = Field(
        20.0,
        gt=0,
        le=1024,
        description="Largest request after decompression; over it: RESOURCE_EXHAUSTED / 413 (not retried).",
    )
    max_inflight_mib: float = Field(
        256.0,
        ge=0,
        description="Request bytes being decoded and processed at once, both transports together; over it "
        "new requests are refused (UNAVAILABLE / 503) before decoding. 0: no limit.",
    )
    max_concurrent_requests: int = Field(
        32,
        ge=0,
        description="Requests being processed at once, both transports together; over it new ones are "
        "refused (UNAVAILABLE / 503, retryable). With the GIL more gives latency, not throughput. 0: no limit.",
    )
    max_attributes_per_span: int = Field(
        128,
        ge=0,
        description="Spans with more attributes are rejected and reported in `partial_success` (the SDKs' "
        "default limit is 128). 0: no limit.",
    )
    retry_after: Duration = Field(
        1.0,
        description="Delay suggested to refused clients (RetryInfo / Retry-After) unless a component gives one.",
    )

    def problems(self) -> list[tuple[str, str]]:
        if self.protocols.grpc is None and self.protocols.http is None:
            return [("protocols", "enable at least one of grpc, http")]
        out: list[tuple[str, str]] = []
        for name, settings in (("grpc", self.protocols.grpc), ("http", self.protocols.http)):
            if settings is not None:
                out.extend((f"protocols::{name}::{key}", message) for key, message in settings.problems())
                if settings.tls is not None:
                    out.extend(
                        (f"protocols::{name}::tls::{key}", message)
                        for key, message in settings.tls.problems()
                    )
        return out


class OtlpReceiver:
    """Serves the configured transports and feeds the bound pipelines."""

    def __init__(self, config: OtlpReceiverConfig, settings: CreateSettings) -> None:
        self.config = config
        self._logger = settings.logger
        self._intake = Intake(
            str(settings.id),
            settings.telemetry,
            settings.logger,
            max_request_bytes=int(config.max_request_size_mib * _MIB),
            max_inflight_bytes=int(config.max_inflight_mib * _MIB),
            max_concurrent_requests=config.max_concurrent_requests,
            max_attributes_per_span=config.max_attributes_per_span,
            retry_after_s=config.retry_after,
        )
        self._grpc: GrpcTransport | None = None
        self._http: HttpTransport | None = None
        self._started = False

    @property
    def grpc_port(self) -> int:
        """The bound gRPC port (useful with port 0), or 0 when gRPC is off or not started."""
        return self._grpc.port if self._grpc is not None else 0

    @property
    def http_port(self) -> int:
        """The bound HTTP port, or 0."""
        return self._http.port if self._http is not None else 0

    def bind(self, consumers: Mapping[Signal, Consumer]) -> None:
        self._intake.bind(consumers)

    def start(self, host: Host) -> None:
        if self._started:
            return
        self._intake.start(host)
        reuse_port = bool(host.shared.get(REUSE_PORT_KEY, False))
        protocols = self.config.protocols
        try:
            if protocols.grpc is not None:
                settings = protocols.grpc
                self._grpc = GrpcTransport(
                    self._intake,
                    settings.endpoint,
                    threads=settings.max_threads or _auto_threads(self.config.max_concurrent_requests),
                    tls=settings.tls,
                    auth=_authenticator(settings.auth),
                    logger=self._logger,
                )
                self._grpc.start(reuse_port, _extension_handlers(host))
            if protocols.http is not None:
                http = protocols.http
                host_name, _, port = http.endpoint.rpartition(":")
                self._http = HttpTransport(
                    self._intake,
                    (host_name.strip("[]"), int(port)),
                    tls=http.tls,
                    auth=_authenticator(http.auth),
                    idle_timeout_s=http.idle_timeout,
                    body_timeout_s=http.body_timeout,
                    max_connections=http.max_connections,
                    logger=self._logger,
                )
                self._http.start(reuse_port)
        except Exception:
            self.shutdown(1.0)
            raise
        self._started = True

    def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, let in-flight requests finish (up to ``timeout_s``), close every connection."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        if self._http is not None:
            self._http.stop_accepting()
        if self._grpc is not None:
            self._grpc.stop(max(0.0, deadline - time.monotonic()))
            self._grpc = None
        self._intake.wait_idle(max(0.0, deadline - time.monotonic()))
        if self._http is not None:
            self._http.close_connections()
            self._http = None
        self._intake.flush_log()
        self._started = False


def _auto_threads(max_concurrent_requests: int) -> int:
    return max_concurrent_requests + 8 if max_concurrent_requests else 32


def _extension_handlers(host: Host) -> list[Any]:
    """gRPC services that extensions offer on the receiver's server (the health check's, for one)."""
    handlers: list[Any] = []
    for extension in host.extensions.values():
        provide = getattr(extension, "grpc_generic_handlers", None)
        if callable(provide):
            handlers.extend(provide())
    return handlers


def _create(config: OtlpReceiverConfig, settings: CreateSettings) -> OtlpReceiver:
    return OtlpReceiver(config, settings)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type_name="otlp",
    config_type=OtlpReceiverConfig,
    create=_create,
    description="OTLP over gRPC and HTTP (protobuf and JSON): traces, metrics and logs.",
)
