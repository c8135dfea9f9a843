"""Test data for drift: prompts on several topics from templates, and OTLP requests of GenAI spans."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector.data import TraceBatch
from collector.genai.spans import GenAISpan, extract_genai_spans

# Each topic: templates with {a} {b} slots, and the words that fill them. Topics share function words
# ("how", "my", "the", "can") as real prompts do, so windows differ in content words only.
TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "billing": (
        [
            "why was my {a} charged twice for the {b}",
            "how can I get a refund for the {b} on my {a}",
            "please explain the {b} on my latest {a}",
            "can you cancel the {b} and update my {a}",
        ],
        ["invoice", "credit card", "account", "subscription", "bank statement", "receipt"],
        ["annual plan", "late fee", "tax", "upgrade", "monthly charge", "discount"],
    ),
    "cooking": (
        [
            "how long should I bake the {a} with {b}",
            "what can I use instead of {b} in a {a}",
            "give me a quick recipe for {a} with {b}",
            "why did my {a} turn out dry when I added {b}",
        ],
        ["bread", "lasagna", "chicken", "chocolate cake", "risotto", "pancakes"],
        ["butter", "garlic", "eggs", "fresh basil", "cream", "lemon zest"],
    ),
    "programming": (
        [
            "how do I fix a {b} in my {a} code",
            "why does my {a} function raise a {b}",
            "write a {a} snippet that handles a {b}",
            "what is the best way to test a {b} in {a}",
        ],
        ["python", "rust", "javascript", "sql query", "bash script", "go"],
        ["null pointer", "timeout", "race condition", "memory leak", "type error", "deadlock"],
    ),
    "travel": (
        [
            "what is the cheapest way to get from {a} to {b}",
            "plan a three day trip to {a} with a stop in {b}",
            "do I need a visa to visit {a} after {b}",
            "which month is best to fly to {a} and {b}",
        ],
        ["lisbon", "tokyo", "nairobi", "montreal", "hanoi", "oslo"],
        ["the airport", "the coast", "the old town", "the mountains", "berlin", "a night train"],
    ),
}


def prompts(topic: str | dict[str, float], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` prompts from one topic, or from a mix ``{topic: weight}``."""
    mix = {topic: 1.0} if isinstance(topic, str) else topic
    names = list(mix)
    weights = np.asarray([mix[n] for n in names], dtype=np.float64)
    picks = rng.choice(len(names), size=count, p=weights / weights.sum())
    out: list[str] = []
    for pick in picks:
        templates, slot_a, slot_b = TOPICS[names[int(pick)]]
        template = templates[int(rng.integers(len(templates)))]
        text = template.format(
            a=slot_a[int(rng.integers(len(slot_a)))], b=slot_b[int(rng.integers(len(slot_b)))]
        )
        out.append(text)
    return out


@dataclass
class SpanSpec:
    """One GenAI chat span to encode."""

    prompt: str | None = "hello"
    model: str = "gpt-4o-mini"
    service: str = "chat-api"
    input_tokens: int = 100
    output_tokens: int = 50
    duration_s: float = 0.5
    finish_reason: str | None = "stop"
    error_type: str = ""
    answer: str | None = None


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(
            key=key,
            value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=str(v)) for v in value])),
        )
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def request(
    specs: Sequence[SpanSpec], start_ns: int = 1_700_000_000_000_000_000
) -> ExportTraceServiceRequest:
    """One export request; spans of each service under their own resource."""
    out = ExportTraceServiceRequest()
    by_service: dict[str, list[SpanSpec]] = {}
    for spec in specs:
        by_service.setdefault(spec.service, []).append(spec)
    for service, group in by_service.items():
        resource_spans = ResourceSpans()
        resource_spans.resource.attributes.append(_kv("service.name", service))
        scope = ScopeSpans()
        scope.scope.name = "tests"
        for index, spec in enumerate(group):
            span = Span(name=f"chat {spec.model}", trace_id=bytes(16), span_id=index.to_bytes(8, "big"))
            span.start_time_unix_nano = start_ns
            span.end_time_unix_nano = start_ns + int(spec.duration_s * 1e9)
            attributes = [
                _kv("gen_ai.operation.name", "chat"),
                _kv("gen_ai.provider.name", "openai"),
                _kv("gen_ai.request.model", spec.model),
                _kv("gen_ai.usage.input_tokens", spec.input_tokens),
                _kv("gen_ai.usage.output_tokens", spec.output_tokens),
            ]
            if spec.finish_reason is not None:
                attributes.append(_kv("gen_ai.response.finish_reasons", [spec.finish_reason]))
            if spec.answer is not None:
                output = [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": spec.answer}],
                        "finish_reason": spec.finish_reason or "stop",
                    }
                ]
                attributes.append(_kv("gen_ai.output.messages", json.dumps(output)))
            if spec.error_type:
                attributes.append(_kv("error.type", spec.error_type))
            if spec.prompt is not None:
                messages = [
                    {
                        "role": "system",
                        "parts": [{"type": "text", "content": "You are a helpful assistant."}],
                    },
                    {"role": "user", "parts": [{"type": "text", "content": spec.prompt}]},
                ]
                attributes.append(_kv("gen_ai.input.messages", json.dumps(messages)))
            span.attributes.extend(attributes)
            scope.spans.append(span)
        resource_spans.scope_spans.append(scope)
        out.resource_spans.append(resource_spans)
    return out


def batch(specs: Sequence[SpanSpec]) -> TraceBatch:
    return TraceBatch(request(specs))


def genai_spans(specs: Sequence[SpanSpec]) -> list[GenAISpan]:
    return extract_genai_spans(request(specs))
