"""Build OTLP trace requests with GenAI spans under any convention generation, for tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collector.data import TraceBatch

T0 = 1_790_000_000_000_000_000  # 2026-09-21, inside genai-prices' current price periods
_ids = itertools.count(1)


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=any_value(v)) for k, v in value.items())
        return out
    return AnyValue(string_value=str(value))


@dataclass
class S:
    """One span to build: attributes plus timing, ids and status."""

    attributes: Mapping[str, Any]
    duration_s: float = 1.0
    start_ns: int = T0
    trace: int = 1
    span: int = 0
    parent: int = 0
    error: bool = False
    name: str = "span"
    extra: dict[str, Any] = field(default_factory=dict)


def span_message(spec: S) -> Span:
    span = Span(name=spec.name)
    span.trace_id = spec.trace.to_bytes(16, "big")
    span.span_id = (spec.span or next(_ids) + 1_000_000).to_bytes(8, "big")
    if spec.parent:
        span.parent_span_id = spec.parent.to_bytes(8, "big")
    span.start_time_unix_nano = spec.start_ns
    span.end_time_unix_nano = spec.start_ns + round(spec.duration_s * 1e9)
    if spec.error:
        span.status.code = Status.STATUS_CODE_ERROR
    span.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in spec.attributes.items())
    return span


def request(
    specs: Iterable[S],
    service: str = "svc",
    resource: Mapping[str, Any] | None = None,
    scope: str = "tests",
) -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    rs = out.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=any_value(service)))
    for key, value in (resource or {}).items():
        rs.resource.attributes.append(KeyValue(key=key, value=any_value(value)))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    ss.spans.extend(span_message(spec) for spec in specs)
    return out


def batch(specs: Iterable[S], **kwargs: Any) -> TraceBatch:
    return TraceBatch(request(specs, **kwargs))


def chat_current(
    model: str = "gpt-4o",
    provider: str = "openai",
    input_tokens: int | None = 100,
    output_tokens: int | None = 20,
    **extra: Any,
) -> dict[str, Any]:
    """Attributes of a chat span under the current conventions."""
    out: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
    }
    if input_tokens is not None:
        out["gen_ai.usage.input_tokens"] = input_tokens
    if output_tokens is not None:
        out["gen_ai.usage.output_tokens"] = output_tokens
    out.update(extra)
    return out


def chat_legacy(
    model: str = "gpt-4o", system: str = "openai", input_tokens: int = 100, output_tokens: int = 20
) -> dict[str, Any]:
    """The same call under the legacy (≤1.36) names."""
    return {
        "gen_ai.system": system,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.usage.prompt_tokens": input_tokens,
        "gen_ai.usage.completion_tokens": output_tokens,
    }


def chat_openinference(
    model: str = "gpt-4o", provider: str = "openai", input_tokens: int = 100, output_tokens: int = 20
) -> dict[str, Any]:
    """The same call as OpenInference (Phoenix) writes it."""
    return {
        "openinference.span.kind": "LLM",
        "llm.model_name": model,
        "llm.provider": provider,
        "llm.token_count.prompt": input_tokens,
        "llm.token_count.completion": output_tokens,
    }
