"""Counting the items of an OTLP request without decoding it: a "lite" schema with OTLP's field numbers.

When a request is refused before decoding (memory limiter over its soft limit, in-flight budget
exhausted) the receiver still counts the refused spans, data points or log records. Decoding the
request with the real classes would allocate several times its size, the very thing refusal avoids.
The schema below declares only the path down to the items, with each item as ``bytes``, so upb parses
a request in a few hundredths of a microsecond per item and Python never touches the item bodies.
The wire format of a length-delimited field is the same whether it is declared a message or bytes,
so any valid OTLP request parses; a payload that does not parse counts as zero items.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from collector.component import Signal

__all__ = ["count_items"]

_PACKAGE = "otel_llm.collector.lite"
# Field numbers of the metric data oneof (opentelemetry/proto/metrics/v1/metrics.proto).
_METRIC_DATA = {"gauge": 5, "sum": 7, "histogram": 9, "exponential_histogram": 10, "summary": 11}


def _build() -> dict[Signal, Any]:
    lbl_rep = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    lbl_opt = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    t_msg = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    t_bytes = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    file = descriptor_pb2.FileDescriptorProto(name="otel_llm_lite_count.proto", package=_PACKAGE)

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        msg = file.message_type.add(name=name)
        for field_name, number, label, kind, type_name in fields:
            field = msg.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"

    message("TraceRequest", [("resource_spans", 1, lbl_rep, t_msg, "ResourceSpans")])
    message("ResourceSpans", [("scope_spans", 2, lbl_rep, t_msg, "ScopeSpans")])
    message("ScopeSpans", [("spans", 2, lbl_rep, t_bytes, "")])
    message("LogsRequest", [("resource_logs", 1, lbl_rep, t_msg, "ResourceLogs")])
    message("ResourceLogs", [("scope_logs", 2, lbl_rep, t_msg, "ScopeLogs")])
    message("ScopeLogs", [("log_records", 2, lbl_rep, t_bytes, "")])
    message("MetricsRequest", [("resource_metrics", 1, lbl_rep, t_msg, "ResourceMetrics")])
    message("ResourceMetrics", [("scope_metrics", 2, lbl_rep, t_msg, "ScopeMetrics")])
    message("ScopeMetrics", [("metrics", 2, lbl_rep, t_msg, "Metric")])
    message("Metric", [(name, number, lbl_opt, t_msg, "Points") for name, number in _METRIC_DATA.items()])
    message("Points", [("data_points", 1, lbl_rep, t_bytes, "")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)

    def cls(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))

    return {
        Signal.TRACES: cls("TraceRequest"),
        Signal.METRICS: cls("MetricsRequest"),
        Signal.LOGS: cls("LogsRequest"),
    }


_CLASSES = _build()


def count_items(signal: Signal, payload: bytes) -> int:
    """Spans, data points or log records in a serialised export request; 0 when it does not parse."""
    try:
        request = _CLASSES[signal].FromString(payload)
    except DecodeError:
        return 0
    if signal is Signal.TRACES:
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal is Signal.LOGS:
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for name in _METRIC_DATA:
                    if metric.HasField(name):
                        total += len(getattr(metric, name).data_points)
    return total
