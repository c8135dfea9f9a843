"""The batches that flow through pipelines: one decoded OTLP export request each.

A batch is decoded once, at the receiver. Processors that need the GenAI view of the spans ask
:meth:`TraceBatch.genai_spans`, which walks the attributes once and caches the result for every
later processor of the same pipeline; a processor that changes span attributes calls
:meth:`TraceBatch.invalidate` so the next reader sees the change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.component import Signal

if TYPE_CHECKING:
    from collector.genai.spans import GenAISpan

__all__ = ["Batch", "LogsBatch", "MetricsBatch", "TraceBatch", "count_data_points"]


@dataclass(slots=True)
class TraceBatch:
    """Spans of one export request, with their resources and scopes attached."""

    request: ExportTraceServiceRequest
    received_ns: int = field(default_factory=time.time_ns)
    _items: int = -1
    _genai: list[GenAISpan] | None = None

    signal = Signal.TRACES

    @property
    def items(self) -> int:
        """Number of spans."""
        if self._items < 0:
            self._items = sum(len(ss.spans) for rs in self.request.resource_spans for ss in rs.scope_spans)
        return self._items

    def genai_spans(self) -> list[GenAISpan]:
        """The GenAI spans of this batch, normalised to current convention names; computed once."""
        if self._genai is None:
            from collector.genai.spans import extract_genai_spans

            self._genai = extract_genai_spans(self.request)
        return self._genai

    def invalidate(self) -> None:
        """Forget cached views after the request was changed in place."""
        self._items = -1
        self._genai = None


@dataclass(slots=True)
class MetricsBatch:
    """Metrics of one export request (passed through, or derived by processors)."""

    request: ExportMetricsServiceRequest
    received_ns: int = field(default_factory=time.time_ns)
    _items: int = -1

    signal = Signal.METRICS

    @property
    def items(self) -> int:
        """Number of data points."""
        if self._items < 0:
            self._items = count_data_points(self.request)
        return self._items

    def invalidate(self) -> None:
        """Forget cached counts after the request was changed in place."""
        self._items = -1


@dataclass(slots=True)
class LogsBatch:
    """Log records of one export request."""

    request: ExportLogsServiceRequest
    received_ns: int = field(default_factory=time.time_ns)
    _items: int = -1

    signal = Signal.LOGS

    @property
    def items(self) -> int:
        """Number of log records."""
        if self._items < 0:
            self._items = sum(
                len(sl.log_records) for rl in self.request.resource_logs for sl in rl.scope_logs
            )
        return self._items

    def invalidate(self) -> None:
        """Forget cached counts after the request was changed in place."""
        self._items = -1


Batch = TraceBatch | MetricsBatch | LogsBatch


def count_data_points(request: ExportMetricsServiceRequest) -> int:
    """Data points in a metrics request, as the Collector counts them."""
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total
