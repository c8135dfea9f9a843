"""Builders for OTLP trace batches with GenAI spans and captured content, shared by the quality tests."""

from __future__ import annotations

import json
import logging
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector.component import ComponentId, CreateSettings, Factory, Host
from collector.data import TraceBatch
from collector.metrics import MetricStore
from collector.telemetry import SelfTelemetry

T0 = 1_750_000_000_000_000_000


def any_value(value: Any) -> AnyValue:
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, list):
        out.array_value.values.extend(any_value(v) for v in value)
    elif isinstance(value, dict):
        out.kvlist_value.values.extend(KeyValue(key=k, value=any_value(v)) for k, v in value.items())
    else:
        raise TypeError(type(value))
    return out


def trace_id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def span_id(n: int) -> bytes:
    return n.to_bytes(8, "big")


def messages(role: str, text: str, **extra: Any) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}], **extra}])


def chat_span(
    trace: int,
    span: int | None = None,
    *,
    question: str | None = "What is the capital of France?",
    answer: str | None = "The capital of France is Paris.",
    finish: str = "stop",
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    response_id: str = "",
    prompt_version: str = "",
    output_type: str = "",
    tool_result: str | None = None,
    duration_s: float = 1.0,
    operation: str = "chat",
    extra: dict[str, Any] | None = None,
) -> Span:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 10,
    }
    if response_id:
        attributes["gen_ai.response.id"] = response_id
    if prompt_version:
        attributes["gen_ai.prompt.version"] = prompt_version
    if output_type:
        attributes["gen_ai.output.type"] = output_type
    if question is not None:
        inputs = [{"role": "user", "parts": [{"type": "text", "content": question}]}]
        if tool_result is not None:
            inputs.append(
                {
                    "role": "tool",
                    "parts": [{"type": "tool_call_response", "id": "c1", "response": tool_result}],
                }
            )
        attributes["gen_ai.input.messages"] = json.dumps(inputs)
    if answer is not None:
        attributes["gen_ai.output.messages"] = json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": finish}]
        )
    attributes.update(extra or {})
    return Span(
        trace_id=trace_id(trace),
        span_id=span_id(span if span is not None else trace),
        name=f"{operation} {model}",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + int(duration_s * 1e9),
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()],
    )


def retrieval_span(trace: int, span: int, documents: list[dict[str, Any]]) -> Span:
    attributes = {
        "gen_ai.operation.name": "retrieval",
        "gen_ai.provider.name": "chroma",
        "gen_ai.retrieval.documents": json.dumps(documents),
    }
    return Span(
        trace_id=trace_id(trace),
        span_id=span_id(span),
        name="retrieval",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 1000,
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()],
    )


def batch(*spans: Span, service: str = "chat-app") -> TraceBatch:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value=any_value(service))
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "test"
    scope.spans.extend(spans)
    return TraceBatch(request)


def make_host(instance: str = "test-instance") -> Host:
    host = Host(telemetry=SelfTelemetry(instance))
    host.shared["collector.service.instance_id"] = instance
    return host


def settings(factory: Factory, host: Host) -> CreateSettings:
    return CreateSettings(
        id=ComponentId(factory.type_name),
        kind=factory.kind,
        logger=logging.getLogger(f"test.{factory.type_name}"),
        telemetry=host.telemetry,
    )


def build(factory: Factory, host: Host, **config: Any) -> Any:
    """Create (not start) a component from a YAML-like config dict."""
    parsed = factory.config_type.model_validate(config)
    assert parsed.problems() == []
    return factory.create(parsed, settings(factory, host))


def points(store: MetricStore, name: str) -> list[tuple[dict[str, object], Any]]:
    """(non-empty attributes, point) of every series of one metric."""
    out = []
    for snap in store.snapshot():
        if snap.name == name:
            for point in snap.points:
                out.append(({k: v for k, v in point.attributes if v not in ("", None)}, point))
    return out


def value(store: MetricStore, name: str, **where: object) -> float:
    """Sum of counter/gauge values (or histogram counts) over series matching ``where``."""
    result = 0.0
    for attributes, point in points(store, name):
        if all(attributes.get(k) == v for k, v in where.items()):
            result += point.count if point.count else point.value
    return result
