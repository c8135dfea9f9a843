"""``otlp_http`` exporter: OTLP/HTTP with protobuf bodies, for traces, metrics and logs.

::

    exporters:
      otlp_http:
        endpoint: https://backend.example:4318     # /v1/traces, /v1/metrics, /v1/logs are appended
        traces_endpoint: null                      # or a full URL for one signal

Uses the standard library's ``http.client`` with one keep-alive connection per sending thread. 429,
502, 503 and 504 and connection failures are retried (honouring ``Retry-After``, in seconds or as an
HTTP date); any other non-2xx answer drops the request, counted and logged with the server's message.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import logging
import ssl
import threading
import time
from urllib.parse import urlsplit

from google.rpc import status_pb2  # type: ignore[import-untyped]
from pydantic import Field

from collector.component import CreateSettings, Factory, Kind, Signal
from collector.errors import ComponentError, PermanentExportError, RetryableExportError
from collector.exporters._helper import ClientTLSSettings, ExporterConfig, QueuedExporter
from collector.exporters.otlp import PartialSuccessLog

__all__ = ["FACTORY", "HttpSender", "OtlpHttpExporterConfig", "parse_retry_after"]

_DEFAULT_PATHS = {Signal.TRACES: "/v1/traces", Signal.METRICS: "/v1/metrics", Signal.LOGS: "/v1/logs"}
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class OtlpHttpExporterConfig(ExporterConfig):
    """The ``otlp_http`` exporter; ``endpoint`` is a base URL such as ``http://127.0.0.1:4318``."""

    traces_endpoint: str | None = Field(
        None, description="Full URL for traces; default: endpoint + /v1/traces."
    )
    metrics_endpoint: str | None = Field(
        None, description="Full URL for metrics; default: endpoint + /v1/metrics."
    )
    logs_endpoint: str | None = Field(None, description="Full URL for logs; default: endpoint + /v1/logs.")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key in ("endpoint", "traces_endpoint", "metrics_endpoint", "logs_endpoint"):
            value = getattr(self, key)
            if value is None:
                continue
            parts = urlsplit(value)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                out.append((key, f"expected an http:// or https:// URL, got {value!r}"))
        return out

    def url(self, signal: Signal) -> str:
        explicit = {
            Signal.TRACES: self.traces_endpoint,
            Signal.METRICS: self.metrics_endpoint,
            Signal.LOGS: self.logs_endpoint,
        }[signal]
        return explicit or self.endpoint.rstrip("/") + _DEFAULT_PATHS[signal]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpSender:
    """POSTs protobuf bodies; one connection per calling thread."""

    def __init__(self, config: OtlpHttpExporterConfig, logger: logging.Logger, exporter_id: str) -> None:
        self._config = config
        self._targets = {signal: urlsplit(config.url(signal)) for signal in Signal}
        headers = {"Content-Type": "application/x-protobuf", **config.headers}
        if config.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        self._headers = headers
        self._local = threading.local()
        self._context: ssl.SSLContext | None = None
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._partial = PartialSuccessLog(logger, exporter_id)

    def start(self) -> None:
        if any(target.scheme == "https" for target in self._targets.values()):
            self._context = _client_context(self._config.tls)

    def _connection(self, signal: Signal, timeout_s: float) -> http.client.HTTPConnection:
        target = self._targets[signal]
        cache: dict[tuple[str, str, int | None], http.client.HTTPConnection] = getattr(
            self._local, "conns", {}
        )
        self._local.conns = cache
        key = (target.scheme, target.hostname or "", target.port)
        conn = cache.get(key)
        if conn is None:
            if target.scheme == "https":
                conn = http.client.HTTPSConnection(
                    target.hostname or "", target.port, timeout=timeout_s, context=self._context
                )
            else:
                conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=timeout_s)
            cache[key] = conn
            with self._lock:
                self._connections.append(conn)
        conn.timeout = timeout_s
        return conn

    def _drop(self, signal: Signal) -> None:
        target = self._targets[signal]
        cache = getattr(self._local, "conns", {})
        conn = cache.pop((target.scheme, target.hostname or "", target.port), None)
        if conn is not None:
            conn.close()

    def send(self, signal: Signal, payload: bytes, timeout_s: float) -> int:
        body = gzip.compress(payload, compresslevel=6) if self._config.compression == "gzip" else payload
        target = self._targets[signal]
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        for attempt in (1, 2):
            conn = self._connection(signal, timeout_s)
            reused = conn.sock is not None
            try:
                conn.request("POST", path, body=body, headers=self._headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self._drop(signal)
                # A kept-alive connection the server closed while idle: try once more on a new one
                # rather than waiting a whole retry interval.
                if reused and attempt == 1 and not isinstance(exc, TimeoutError):
                    continue
                raise RetryableExportError(
                    f"cannot reach {target.geturl()}: {type(exc).__name__}: {exc}"
                ) from None
        if response.getheader("Connection", "").lower() == "close":
            self._drop(signal)
        status = response.status
        if 200 <= status < 300:
            return self._partial.read(signal, data)
        reason = f"HTTP {status}: {_error_message(response.getheader('Content-Type', ''), data)}"
        if status in _RETRYABLE_STATUS:
            raise RetryableExportError(reason, parse_retry_after(response.getheader("Retry-After")))
        raise PermanentExportError(reason)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


def _error_message(content_type: str, data: bytes) -> str:
    """The message of an OTLP error body (a google.rpc.Status), or the start of a text body."""
    if "protobuf" in content_type:
        try:
            return str(status_pb2.Status.FromString(data).message) or "(no message)"
        except Exception:  # fall back to showing bytes
            pass
    text = data[:200].decode("utf-8", "replace").strip()
    return text or "(empty body)"


def _client_context(tls: ClientTLSSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file and tls.key_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ComponentError(f"cannot load TLS files: {exc}") from exc
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _create(config: OtlpHttpExporterConfig, settings: CreateSettings) -> QueuedExporter:
    sender = HttpSender(config, settings.logger, str(settings.id))
    return QueuedExporter(config, settings, sender, frozenset(Signal))


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type_name="otlp_http",
    config_type=OtlpHttpExporterConfig,
    create=_create,
    description="OTLP over HTTP (protobuf) with a sending queue (optionally persistent) and retries.",
)
