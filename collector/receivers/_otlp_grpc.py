"""OTLP over gRPC: a thread-pool ``grpc.server`` with generic handlers that take the raw request bytes.

Raw bytes (no generated stubs) let the receiver check its in-flight budget and the memory limiter
*before* decoding, and answer a malformed payload with ``INVALID_ARGUMENT`` and a message instead of
grpc's generic deserialisation failure. Decompression (gzip) and the size limit are grpc-core's: with
``grpc.max_receive_message_length`` set it refuses a larger message, decompressed or not, with
``RESOURCE_EXHAUSTED`` before any handler runs (so such requests are not in the receiver's counters).

Backpressure answers ``UNAVAILABLE`` with the delay twice over: as a ``google.rpc.Status`` carrying a
``google.rpc.RetryInfo`` detail in the ``grpc-status-details-bin`` trailer (what the Go and Java
exporters and the Collector read) and as ``google.rpc.retryinfo-bin`` (what the Python SDK's exporter
reads).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration as DurationPb
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]

from collector.auth import ScopedAuthenticator
from collector.component import Signal
from collector.errors import ComponentError
from collector.logs import event
from collector.receivers._intake import Intake, Outcome, OutcomeKind, ServerTLSSettings

__all__ = ["GrpcTransport", "retry_trailers"]

TRANSPORT = "grpc"
_METHODS = {
    Signal.TRACES: ("opentelemetry.proto.collector.trace.v1.TraceService", "Export"),
    Signal.METRICS: ("opentelemetry.proto.collector.metrics.v1.MetricsService", "Export"),
    Signal.LOGS: ("opentelemetry.proto.collector.logs.v1.LogsService", "Export"),
}
_CODES = {
    OutcomeKind.INVALID: (grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    OutcomeKind.TOO_LARGE: (grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
    OutcomeKind.REFUSED: (grpc.StatusCode.UNAVAILABLE, code_pb2.UNAVAILABLE),
    OutcomeKind.UNAUTHENTICATED: (grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED),
    OutcomeKind.FORBIDDEN: (grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    OutcomeKind.UNIMPLEMENTED: (grpc.StatusCode.UNIMPLEMENTED, code_pb2.UNIMPLEMENTED),
    OutcomeKind.INTERNAL: (grpc.StatusCode.INTERNAL, code_pb2.INTERNAL),
}


def retry_trailers(code: int, message: str, retry_after_s: float) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata that carries a retry delay in both forms clients read (see module docstring)."""
    seconds = int(retry_after_s)
    delay = DurationPb(seconds=seconds, nanos=int((retry_after_s - seconds) * 1e9))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    status = status_pb2.Status(code=code, message=message)
    status.details.add().Pack(info)
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
    )


class GrpcTransport:
    """The gRPC side of one OTLP receiver."""

    def __init__(
        self,
        intake: Intake,
        endpoint: str,
        *,
        threads: int,
        tls: ServerTLSSettings | None,
        auth: ScopedAuthenticator | None,
        logger: logging.Logger,
    ) -> None:
        self._intake = intake
        self._endpoint = endpoint
        self._threads = threads
        self._tls = tls
        self._auth = auth
        self._logger = logger
        self._server: grpc.Server | None = None
        self.port = 0

    def start(self, reuse_port: bool, extra_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        intake = self._intake
        intake.counters(TRANSPORT)
        options = [
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", intake.max_request_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ]
        server = grpc.server(
            ThreadPoolExecutor(
                max_workers=self._threads, thread_name_prefix=f"otlp-grpc-{intake.receiver_id}"
            ),
            options=options,
        )
        handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for signal, (service, method) in _METHODS.items():
            handler = grpc.unary_unary_rpc_method_handler(self._handler(signal))
            handlers.setdefault(service, {})[method] = handler
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(service, methods) for service, methods in handlers.items()]
        )
        if extra_handlers:
            server.add_generic_rpc_handlers(tuple(extra_handlers))
        try:
            if self._tls is None:
                port = server.add_insecure_port(self._endpoint)
            else:
                port = server.add_secure_port(self._endpoint, _server_credentials(self._tls))
        except (RuntimeError, OSError) as exc:
            raise ComponentError(f"cannot listen on {self._endpoint} (gRPC): {exc}") from exc
        if port == 0:
            raise ComponentError(f"cannot listen on {self._endpoint} (gRPC): address in use or invalid")
        server.start()
        self._server = server
        self.port = port
        event(
            self._logger,
            logging.INFO,
            "receiver listening",
            receiver=intake.receiver_id,
            transport=TRANSPORT,
            endpoint=self._endpoint,
            port=port,
            tls=self._tls is not None,
            auth=self._auth is not None,
        )

    def stop(self, timeout_s: float) -> None:
        """Stop accepting, give running calls ``timeout_s`` to finish, then cancel what is left."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=max(timeout_s, 0.0)).wait(timeout_s + 0.5)

    def _handler(self, signal: Signal) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        intake = self._intake
        auth = self._auth

        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            if auth is not None:
                denied = intake.check_access(TRANSPORT, auth, _metadata(context, auth.header))
                if denied is not None:
                    return _fail(context, denied)
            size = len(request)
            reason, refused = intake.admit(TRANSPORT, signal, size)
            if refused is not None:
                intake.refused_before_decode(TRANSPORT, signal, reason, request)
                return _fail(context, refused)
            try:
                outcome = intake.handle(TRANSPORT, signal, request)
            finally:
                intake.release(size)
            if outcome.kind is OutcomeKind.OK:
                assert outcome.response is not None
                data: bytes = outcome.response.SerializeToString()
                return data
            return _fail(context, outcome)

        return export


def _metadata(context: grpc.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata():
        if item.key == key:
            value: Any = item.value
            return str(value) if not isinstance(value, bytes) else value.decode("latin-1")
    return None


def _fail(context: grpc.ServicerContext, outcome: Outcome) -> bytes:
    code, rpc_code = _CODES[outcome.kind]
    if outcome.kind is OutcomeKind.REFUSED:
        context.set_trailing_metadata(retry_trailers(rpc_code, outcome.message, outcome.retry_after_s))
    context.set_code(code)
    context.set_details(outcome.message)
    return b""


def _server_credentials(tls: ServerTLSSettings) -> grpc.ServerCredentials:
    try:
        key = Path(tls.key_file).read_bytes()
        cert = Path(tls.cert_file).read_bytes()
        client_ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    except OSError as exc:
        raise ComponentError(f"cannot read TLS files: {exc}") from exc
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
