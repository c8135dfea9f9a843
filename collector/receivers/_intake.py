"""What the OTLP receiver does with one export request, whatever the transport.

Both transports (gRPC in :mod:`._otlp_grpc`, HTTP in :mod:`._otlp_http`) call :meth:`Intake.admit`
before they decode anything and :meth:`Intake.handle` with the decompressed payload; the answer is an
:class:`Outcome` that each transport maps to its own status codes (the OTLP specification's table):

=================  ===================  =====  ==========================================
outcome            gRPC                 HTTP   when
=================  ===================  =====  ==========================================
OK                 OK                   200    accepted (possibly with ``partial_success``)
INVALID            INVALID_ARGUMENT     400    the payload does not decode
TOO_LARGE          RESOURCE_EXHAUSTED   413    over the size limit after decompression
REFUSED            UNAVAILABLE          503    backpressure; with RetryInfo / Retry-After
UNAUTHENTICATED    UNAUTHENTICATED      401    bearer token missing or unknown
FORBIDDEN          PERMISSION_DENIED    403    a known token without the ``ingest`` scope
UNIMPLEMENTED      UNIMPLEMENTED        404    no pipeline of that signal uses this receiver
INTERNAL           INTERNAL             500    a pipeline component failed (counted, logged)
=================  ===================  =====  ==========================================

Thread safety: every method may be called from many transport threads at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client import Counter
from pydantic import Field

from collector.auth import Decision, ScopedAuthenticator
from collector.component import ComponentConfig, Consumer, Host, Signal
from collector.data import Batch, LogsBatch, MetricsBatch, TraceBatch
from collector.errors import RefusedError
from collector.logs import event
from collector.receivers._count import count_items
from collector.telemetry import ReceiverTelemetry, SelfTelemetry
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

__all__ = [
    "Intake",
    "Outcome",
    "OutcomeKind",
    "ServerTLSSettings",
    "hex_ids_to_base64",
]

_Outcome = attrs.OutcomeValues
_STATUS_KEY = "collector.service.status"
# How often refusals and failures are summarised in the log, rather than one line each.
_LOG_EVERY_S = 10.0
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})

_REQUEST_TYPES: dict[Signal, Any] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
}
_RESPONSE_TYPES: dict[Signal, Any] = {
    Signal.TRACES: ExportTraceServiceResponse,
    Signal.METRICS: ExportMetricsServiceResponse,
    Signal.LOGS: ExportLogsServiceResponse,
}
_BATCH_TYPES: dict[Signal, Any] = {
    Signal.TRACES: TraceBatch,
    Signal.METRICS: MetricsBatch,
    Signal.LOGS: LogsBatch,
}


class ServerTLSSettings(ComponentConfig):
    """``tls`` of one protocol: serve TLS, and with ``client_ca_file`` require client certificates (mTLS)."""

    cert_file: str = Field(description="PEM file of the server certificate (chain).")
    key_file: str = Field(description="PEM file of the server's private key.")
    client_ca_file: str | None = Field(
        None, description="PEM file of the CAs that sign client certificates; set to require mTLS."
    )

    def problems(self) -> list[tuple[str, str]]:
        return self.missing_files("cert_file", "key_file", "client_ca_file")


class OutcomeKind(Enum):
    OK = "ok"
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    REFUSED = "refused"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one request; ``response`` is set for OK, ``message`` for every error."""

    kind: OutcomeKind
    message: str = ""
    response: Message | None = None
    retry_after_s: float = 0.0


class _Budget:
    """Requests and bytes in flight; ``try_acquire`` refuses instead of waiting."""

    def __init__(self, max_bytes: int, max_requests: int) -> None:
        self._max_bytes = max_bytes
        self._max_requests = max_requests
        self._bytes = 0
        self._requests = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def try_acquire(self, size: int) -> str:
        """Take ``size`` bytes and one request slot; return "" or the reason it was refused."""
        with self._lock:
            if self._max_requests and self._requests >= self._max_requests:
                return f"more than {self._max_requests} requests in flight"
            # A single request larger than the whole budget still goes through when nothing else is in
            # flight, or it could never be accepted; the size limit bounds it instead.
            if self._max_bytes and self._bytes and self._bytes + size > self._max_bytes:
                return f"more than {self._max_bytes} bytes in flight"
            self._bytes += size
            self._requests += 1
            return ""

    def release(self, size: int) -> None:
        with self._lock:
            self._bytes -= size
            self._requests -= 1
            if self._requests == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request is in flight; True if that happened within ``timeout_s``."""
        with self._lock:
            return self._idle.wait_for(lambda: self._requests == 0, timeout_s)

    @property
    def in_flight(self) -> int:
        return self._requests


class _Summary:
    """Logs refusals and failures: the first at once, later ones summed per interval (counts, not lines)."""

    def __init__(self, logger: logging.Logger, receiver: str) -> None:
        self._logger = logger
        self._receiver = receiver
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], list[int]] = {}
        self._last = -_LOG_EVERY_S
        self._timer: threading.Timer | None = None

    def add(self, what: str, signal: Signal, reason: str, items: int) -> None:
        with self._lock:
            entry = self._counts.setdefault((what, signal.value, reason), [0, 0])
            entry[0] += 1
            entry[1] += items
            wait = self._last + _LOG_EVERY_S - time.monotonic()
            if wait > 0:
                if self._timer is None:  # make sure a burst that stops is still reported
                    self._timer = threading.Timer(wait, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self.flush()

    def flush(self) -> None:
        """Log what was counted since the last line (also called at shutdown)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            self._last = time.monotonic()
            timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        for (what, signal, reason), (requests, items) in counts.items():
            event(
                self._logger,
                logging.WARNING,
                f"{what} data",
                receiver=self._receiver,
                signal=signal,
                reason=reason,
                requests=requests,
                items=items,
                period_s=_LOG_EVERY_S,
            )


def hex_ids_to_base64(value: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping expects base64 bytes."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, str):
                try:
                    raw = bytes.fromhex(item)
                except ValueError:
                    raise ValueError(f"{key}: expected a hex string, got {item[:40]!r}") from None
                out[key] = base64.b64encode(raw).decode("ascii")
            else:
                out[key] = hex_ids_to_base64(item)
        return out
    if isinstance(value, list):
        return [hex_ids_to_base64(item) for item in value]
    return value


class Intake:
    """Decodes, checks and forwards export requests for one receiver; shared by its transports."""

    def __init__(
        self,
        receiver_id: str,
        telemetry: SelfTelemetry,
        logger: logging.Logger,
        *,
        max_request_bytes: int,
        max_inflight_bytes: int,
        max_concurrent_requests: int,
        max_attributes_per_span: int,
        retry_after_s: float,
    ) -> None:
        self.receiver_id = receiver_id
        self.max_request_bytes = max_request_bytes
        self.retry_after_s = retry_after_s
        self._telemetry = telemetry
        self._logger = logger
        self._max_attributes = max_attributes_per_span
        self._consumers: dict[Signal, Consumer] = {}
        self._budget = _Budget(max_inflight_bytes, max_concurrent_requests)
        self._summary = _Summary(logger, receiver_id)
        self._status: Any = None
        self._counters: dict[str, ReceiverTelemetry] = {}
        self._requests: dict[tuple[str, str], Counter] = {}
        self._forbidden: dict[str, Counter] = {}

    def bind(self, consumers: Mapping[Signal, Consumer]) -> None:
        self._consumers = dict(consumers)

    @property
    def signals(self) -> frozenset[Signal]:
        return frozenset(self._consumers)

    def start(self, host: Host) -> None:
        self._status = host.shared.get(_STATUS_KEY)

    def flush_log(self) -> None:
        self._summary.flush()

    def counters(self, transport: str) -> ReceiverTelemetry:
        """Label-bound counters for one transport, created once."""
        if transport not in self._counters:
            self._counters[transport] = self._telemetry.for_receiver(self.receiver_id, transport)
            for outcome in (_Outcome.SUCCESS, _Outcome.REFUSED, _Outcome.FAILURE):
                self._requests[(transport, outcome)] = self._telemetry.counter(
                    m.OTELCOL_RECEIVER_REQUESTS,
                    m.OTELCOL_RECEIVER_REQUESTS_DESCRIPTION,
                    (attrs.RECEIVER, attrs.TRANSPORT, attrs.OUTCOME),
                ).labels(self.receiver_id, transport, outcome)
            self._forbidden[transport] = self._telemetry.counter(
                m.OTEL_LLM_RECEIVER_FORBIDDEN,
                m.OTEL_LLM_RECEIVER_FORBIDDEN_DESCRIPTION,
                (attrs.RECEIVER, attrs.TRANSPORT),
            ).labels(self.receiver_id, transport)
        return self._counters[transport]

    def count_request(self, transport: str, outcome: str) -> None:
        """One more request with ``outcome`` (an ``attrs.OutcomeValues`` member) on ``transport``."""
        self._requests[(transport, outcome)].inc()

    # -- before decoding ------------------------------------------------------------------------------

    def check_access(
        self, transport: str, auth: ScopedAuthenticator | None, value: str | bytes | None
    ) -> Outcome | None:
        """``None`` when ``auth`` is off or lets the header ``value`` in; else the 401 or 403 outcome."""
        if auth is None:
            return None
        decision = auth.decide(value)
        if decision is Decision.ALLOWED:
            return None
        if decision is Decision.FORBIDDEN:
            return self.forbidden(transport)
        return self.unauthenticated(transport)

    def unauthenticated(self, transport: str) -> Outcome:
        self.counters(transport).unauthenticated.inc()
        self.count_request(transport, _Outcome.FAILURE)
        return Outcome(OutcomeKind.UNAUTHENTICATED, "missing or invalid bearer token")

    def forbidden(self, transport: str) -> Outcome:
        """A known token without the ``ingest`` scope; counted apart from unauthenticated requests."""
        self.counters(transport)
        self._forbidden[transport].inc()
        self.count_request(transport, _Outcome.FAILURE)
        return Outcome(OutcomeKind.FORBIDDEN, "the bearer token does not have the ingest scope")

    def too_large(self, transport: str, signal: Signal, size: int | None) -> Outcome:
        """Answer for a body over the limit; its items are unknown, so only the request is counted."""
        self.count_request(transport, _Outcome.FAILURE)
        self._summary.add("rejected", signal, "request too large", 0)
        shown = f"{size} bytes" if size is not None else "the request"
        return Outcome(
            OutcomeKind.TOO_LARGE,
            f"{shown} exceeds the limit of {self.max_request_bytes} bytes (after decompression)",
        )

    def admit(self, transport: str, signal: Signal, size: int) -> tuple[str, Outcome | None]:
        """Take an in-flight slot for a body of ``size`` bytes, or refuse before it is decoded.

        Returns ``("", None)`` when admitted (the caller must :meth:`release` ``size`` later), or
        the reason and a REFUSED outcome (nothing to release). The caller counts the refused items
        with :meth:`refused_before_decode` once it has the payload, if it reads it at all.
        """
        status = self._status
        if status is not None and status.refusing:
            reason = "memory limit reached"
            return reason, self._refused(reason)
        reason = self._budget.try_acquire(size)
        if reason:
            return reason, self._refused(reason)
        return "", None

    def release(self, size: int) -> None:
        self._budget.release(size)

    def refused_before_decode(
        self, transport: str, signal: Signal, reason: str, payload: bytes | None
    ) -> None:
        """Count a request refused at the transport; items are counted cheaply when the body was read."""
        items = count_items(signal, payload) if payload else 0
        self.counters(transport).refused[signal].inc(items)
        self.count_request(transport, _Outcome.REFUSED)
        self._summary.add("refused", signal, reason, items)

    def wait_idle(self, timeout_s: float) -> bool:
        return self._budget.wait_idle(timeout_s)

    def _refused(self, reason: str, retry_after_s: float | None = None) -> Outcome:
        delay = self.retry_after_s if retry_after_s is None else max(retry_after_s, 0.0)
        return Outcome(OutcomeKind.REFUSED, f"data refused, retry later: {reason}", retry_after_s=delay)

    # -- decoding and forwarding ----------------------------------------------------------------------

    def handle(self, transport: str, signal: Signal, payload: bytes, json_body: bool = False) -> Outcome:
        """Decode ``payload`` (protobuf, or OTLP/JSON) and push it down the pipeline; never raises."""
        counters = self.counters(transport)
        consumer = self._consumers.get(signal)
        if consumer is None:
            self.count_request(transport, _Outcome.FAILURE)
            return Outcome(OutcomeKind.UNIMPLEMENTED, f"no {signal.value} pipeline uses this receiver")
        try:
            request = self._decode(signal, payload, json_body)
        except ValueError as exc:
            self.count_request(transport, _Outcome.FAILURE)
            self._summary.add("rejected", signal, "malformed payload", 0)
            return Outcome(OutcomeKind.INVALID, str(exc))
        response = _RESPONSE_TYPES[signal]()
        # Span wrappers made by the attribute check; held until the pipeline is done because upb reuses a
        # live wrapper, so the processors' walk does not build each span's wrapper a second time.
        seen: list[Any] = []
        batch: Batch
        if signal is Signal.TRACES and self._max_attributes:
            rejected, kept = self._drop_oversized_spans(request, seen)
            batch = TraceBatch(request, _items=kept)  # counted by the check, not counted again
            if rejected:
                counters.failed[signal].inc(rejected)
                self._summary.add("rejected", signal, "too many attributes", rejected)
                response.partial_success.rejected_spans = rejected
                response.partial_success.error_message = (
                    f"{rejected} spans have more than {self._max_attributes} attributes and were rejected"
                )
        else:
            batch = _BATCH_TYPES[signal](request)
        items = batch.items
        if items == 0:
            self.count_request(transport, _Outcome.SUCCESS)
            return Outcome(OutcomeKind.OK, response=response)
        try:
            consumer.consume(batch)
        except RefusedError as exc:
            counters.refused[signal].inc(items)
            self.count_request(transport, _Outcome.REFUSED)
            self._summary.add("refused", signal, exc.reason, items)
            return self._refused(exc.reason, exc.retry_after_s)
        except Exception as exc:  # a pipeline bug must not kill the transport thread; counted and logged
            counters.failed[signal].inc(items)
            self.count_request(transport, _Outcome.FAILURE)
            self._summary.add("failed", signal, f"{type(exc).__name__}: {exc}", items)
            self._logger.debug("pipeline failed", exc_info=True)
            return Outcome(OutcomeKind.INTERNAL, f"the pipeline failed: {type(exc).__name__}")
        counters.accepted[signal].inc(items)
        self.count_request(transport, _Outcome.SUCCESS)
        del seen
        return Outcome(OutcomeKind.OK, response=response)

    def _decode(self, signal: Signal, payload: bytes, json_body: bool) -> Any:
        request_type = _REQUEST_TYPES[signal]
        if not json_body:
            try:
                return request_type.FromString(payload)
            except DecodeError as exc:
                raise ValueError(f"cannot decode {request_type.__name__} (protobuf): {exc}") from None
        try:
            tree = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"invalid JSON: {exc}") from None
        except RecursionError:
            raise ValueError("invalid JSON: nested too deeply") from None
        if not isinstance(tree, dict):
            raise ValueError(f"expected a JSON object ({request_type.__name__}), got {type(tree).__name__}")
        request = request_type()
        try:
            json_format.ParseDict(hex_ids_to_base64(tree), request, ignore_unknown_fields=True)
        except (json_format.ParseError, binascii.Error) as exc:
            raise ValueError(f"invalid OTLP/JSON {request_type.__name__}: {exc}") from None
        except RecursionError:
            raise ValueError(f"invalid OTLP/JSON {request_type.__name__}: nested too deeply") from None
        return request

    def _drop_oversized_spans(self, request: ExportTraceServiceRequest, seen: list[Any]) -> tuple[int, int]:
        """Delete spans over the attribute limit; return (rejected, kept)."""
        limit = self._max_attributes
        rejected = 0
        total = 0
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans = list(ss.spans)
                seen.append(spans)
                total += len(spans)
                bad = [i for i, span in enumerate(spans) if len(span.attributes) > limit]
                if bad:
                    container = ss.spans
                    for index in reversed(bad):
                        del container[index]
                    rejected += len(bad)
        return rejected, total - rejected


def responder(signal: Signal) -> Callable[[], Message]:
    """An empty response message for ``signal`` (what an empty or fully accepted request gets)."""
    response_type: Callable[[], Message] = _RESPONSE_TYPES[signal]
    return response_type
