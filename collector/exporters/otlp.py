"""``otlp`` exporter (alias ``otlp_grpc``): OTLP over gRPC, for traces, metrics and logs.

::

    exporters:
      otlp:
        endpoint: backend.example:4317
        tls: {insecure: true}
        sending_queue: {storage: /var/lib/otel-llm/queue}

Requests go out as the serialised bytes the queue holds, over one channel (HTTP/2 multiplexes the
consumers' calls). Status mapping follows the OTLP specification: CANCELLED, DEADLINE_EXCEEDED,
ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retried, RESOURCE_EXHAUSTED only when the server
sent a RetryInfo delay; everything else drops the request (counted, logged). The server's RetryInfo
delay is honoured. A ``partial_success`` answer counts the rejected items as failed and logs the
server's message.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector.component import CreateSettings, Factory, Kind, Signal
from collector.errors import ComponentError, PermanentExportError, RetryableExportError
from collector.exporters._helper import ClientTLSSettings, ExporterConfig, QueuedExporter
from collector.logs import event

__all__ = [
    "FACTORY",
    "GrpcSender",
    "OtlpExporterConfig",
    "PartialSuccessLog",
    "partial_rejections",
]

_PATHS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_RESPONSES: dict[Signal, Any] = {
    Signal.TRACES: ExportTraceServiceResponse,
    Signal.METRICS: ExportMetricsServiceResponse,
    Signal.LOGS: ExportLogsServiceResponse,
}
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_PARTIAL_LOG_EVERY_S = 10.0


class OtlpExporterConfig(ExporterConfig):
    """The ``otlp`` (gRPC) exporter; ``endpoint`` is ``host:port`` (an ``http(s)://`` prefix is accepted)."""

    def problems(self) -> list[tuple[str, str]]:
        target = _target(self.endpoint)
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit():
            return [("endpoint", f"expected host:port, got {self.endpoint!r}")]
        return []


def _target(endpoint: str) -> str:
    for prefix in ("http://", "https://", "dns:///"):
        if endpoint.startswith(prefix):
            return endpoint[len(prefix) :].rstrip("/")
    return endpoint


def partial_rejections(signal: Signal, body: bytes) -> tuple[int, str]:
    """(rejected items, message) from an Export response's ``partial_success``; (0, "") when absent."""
    try:
        response = _RESPONSES[signal].FromString(body)
    except Exception:  # an unreadable success body is still a success
        return 0, ""
    partial = response.partial_success
    rejected = {
        Signal.TRACES: "rejected_spans",
        Signal.METRICS: "rejected_data_points",
        Signal.LOGS: "rejected_log_records",
    }[signal]
    return int(getattr(partial, rejected)), str(partial.error_message)


class PartialSuccessLog:
    """Reads the ``partial_success`` of Export responses and warns about it, at most once per interval.

    Shared by the gRPC and HTTP senders; thread-safe.
    """

    def __init__(self, logger: logging.Logger, exporter_id: str) -> None:
        self._logger = logger
        self._id = exporter_id
        self._lock = threading.Lock()
        self._last = 0.0

    def read(self, signal: Signal, body: bytes) -> int:
        """The items the backend rejected (0 when none or unreadable); logs its message if any."""
        rejected, message = partial_rejections(signal, body)
        if rejected or message:
            self._log(signal, rejected, message)
        return rejected

    def _log(self, signal: Signal, rejected: int, message: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < _PARTIAL_LOG_EVERY_S:
                return
            self._last = now
        event(
            self._logger,
            logging.WARNING,
            "backend rejected part of a request",
            exporter=self._id,
            signal=signal.value,
            rejected=rejected,
            reason=message,
        )


def retry_delay(metadata: Any) -> float | None:
    """The server's RetryInfo delay from trailing metadata, in seconds; None when it sent none."""
    for key, value in metadata or ():
        info = None
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                candidate = error_details_pb2.RetryInfo()
                if detail.Unpack(candidate):
                    info = candidate
        elif key == "google.rpc.retryinfo-bin":
            info = error_details_pb2.RetryInfo.FromString(value)
        if info is not None:
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


class GrpcSender:
    """One channel; thread-safe."""

    def __init__(self, config: OtlpExporterConfig, logger: logging.Logger, exporter_id: str) -> None:
        self._config = config
        self._channel: grpc.Channel | None = None
        self._calls: dict[Signal, Any] = {}
        metadata = [(key.lower(), value) for key, value in config.headers.items()]
        if config.bearer_token:
            metadata.append(("authorization", f"Bearer {config.bearer_token}"))
        self._metadata = tuple(metadata)
        self._compression = (
            grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression
        )
        self._partial = PartialSuccessLog(logger, exporter_id)

    def start(self) -> None:
        config = self._config
        target = _target(config.endpoint)
        retry = config.retry_on_failure
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            # Reconnect on the retry schedule, not grpc's own (up to 120 s), so a backend that comes
            # back is used by the next retry rather than minutes later.
            ("grpc.initial_reconnect_backoff_ms", max(10, int(min(1.0, retry.initial_interval) * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(10, int(min(1.0, retry.initial_interval) * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(100, int(retry.max_interval * 1000))),
        ]
        tls = config.tls
        if tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", tls.server_name_override))
        if tls.insecure and not config.endpoint.startswith("https://"):
            channel = grpc.insecure_channel(target, options=options)
        else:
            channel = grpc.secure_channel(target, _channel_credentials(tls), options=options)
        self._channel = channel
        self._calls = {signal: channel.unary_unary(path) for signal, path in _PATHS.items()}

    def send(self, signal: Signal, payload: bytes, timeout_s: float) -> int:
        call = self._calls.get(signal)
        if call is None:
            raise RetryableExportError("exporter is not started")
        try:
            body = call(payload, timeout=timeout_s, metadata=self._metadata, compression=self._compression)
        except grpc.RpcError as error:
            raise _classify(error) from None
        return self._partial.read(signal, body)

    def close(self) -> None:
        channel, self._channel = self._channel, None
        self._calls = {}
        if channel is not None:
            channel.close()


def _classify(error: Any) -> Exception:
    code = error.code()
    details = error.details() or ""
    reason = f"{code.name}: {details}" if details else code.name
    delay = retry_delay(error.trailing_metadata())
    if code in _RETRYABLE or (code is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None):
        return RetryableExportError(reason, delay)
    return PermanentExportError(reason)


def _channel_credentials(tls: ClientTLSSettings) -> grpc.ChannelCredentials:
    try:
        ca = Path(tls.ca_file).read_bytes() if tls.ca_file else None
        cert = Path(tls.cert_file).read_bytes() if tls.cert_file else None
        key = Path(tls.key_file).read_bytes() if tls.key_file else None
    except OSError as exc:
        raise ComponentError(f"cannot read TLS files: {exc}") from exc
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def _create(config: OtlpExporterConfig, settings: CreateSettings) -> QueuedExporter:
    sender = GrpcSender(config, settings.logger, str(settings.id))
    return QueuedExporter(config, settings, sender, frozenset(Signal))


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type_name="otlp",
    config_type=OtlpExporterConfig,
    create=_create,
    description="OTLP over gRPC with a sending queue (optionally persistent) and retries.",
)
