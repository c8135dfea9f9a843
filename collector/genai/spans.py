"""One walk over a decoded export request that yields its GenAI spans, normalised.

Applications in the field speak three generations of attribute names: the current GenAI conventions,
the legacy ones (``gen_ai.system``, ``gen_ai.usage.prompt_tokens``, ``cache_creation``) and
OpenInference (``llm.model_name``, ``llm.token_count.prompt``). :func:`extract_genai_spans` reads all of
them into one :class:`GenAISpan` with current names and values, so processors never branch on the
convention.

Hot path. Every span's attribute keys are read once into a dict of lazy ``AnyValue`` wrappers
(building the wrapper is the dominant cost, see ``shared/bench/ceiling``); values are decoded only for
GenAI spans and only for the keys processors use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otel_llm.conventions import attributes as attrs

__all__ = ["GenAISpan", "any_value", "extract_genai_spans", "iter_spans"]

# OpenInference (Arize Phoenix) names; a different convention family, so not in our generated registry.
_OI_SPAN_KIND = "openinference.span.kind"
_OI_MODEL = "llm.model_name"
_OI_PROVIDER = "llm.provider"
_OI_SYSTEM = "llm.system"
_OI_PROMPT_TOKENS = "llm.token_count.prompt"
_OI_COMPLETION_TOKENS = "llm.token_count.completion"
_OI_CACHE_READ = "llm.token_count.prompt_details.cache_read"
_OI_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
_OI_REASONING = "llm.token_count.completion_details.reasoning"
_OI_KIND_TO_OPERATION = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
    "RETRIEVER": "retrieval",
}

# Keys whose presence makes a span a GenAI span.
_GATE_KEYS = (attrs.GEN_AI_OPERATION_NAME, attrs.GEN_AI_SYSTEM, attrs.GEN_AI_PROVIDER_NAME, _OI_SPAN_KIND)


def any_value(value: AnyValue) -> object:
    """Decode one ``AnyValue`` into a plain Python value (lists and maps recursively)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _str(values: dict[str, AnyValue], key: str) -> str:
    value = values.get(key)
    if value is None:
        return ""
    text = value.string_value
    if text:
        return text
    decoded = any_value(value)
    return "" if decoded is None or isinstance(decoded, list | dict) else str(decoded)


def _int(values: dict[str, AnyValue], key: str) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "double_value" and value.double_value >= 0 and value.double_value == value.double_value:
        return int(value.double_value)
    if kind == "string_value":
        try:
            return int(value.string_value)
        except ValueError:
            return None
    return None


def _float(values: dict[str, AnyValue], key: str) -> float | None:
    value = values.get(key)
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "double_value":
        return value.double_value
    if kind == "int_value":
        return float(value.int_value)
    if kind == "string_value":
        try:
            return float(value.string_value)
        except ValueError:
            return None
    return None


def _first_int(values: dict[str, AnyValue], *keys: str) -> int | None:
    for key in keys:
        found = _int(values, key)
        if found is not None:
            return found
    return None


@dataclass(slots=True)
class GenAISpan:
    """A GenAI span with its resource and scope, under current convention names.

    Token fields are ``None`` when the span did not report them (never guessed). ``input_tokens``
    includes cached input, as the current conventions define it, whatever the source did.
    """

    resource: Resource
    resource_attributes: dict[str, AnyValue]
    scope_name: str
    span: Span
    attributes: dict[str, AnyValue]
    convention: str
    operation: str
    provider: str
    request_model: str
    response_model: str
    response_id: str
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    error_type: str
    server_address: str
    server_port: int | None
    time_to_first_chunk_s: float | None
    cost_amount: float | None
    cost_currency: str
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def service_name(self) -> str:
        """``service.name`` of the resource, or ``unknown_service`` as the SDKs default it."""
        return _str(self.resource_attributes, "service.name") or "unknown_service"

    @property
    def duration_s(self) -> float:
        """End minus start in seconds; a span that ends before it starts counts as 0."""
        return max(0, self.span.end_time_unix_nano - self.span.start_time_unix_nano) / 1e9

    @property
    def is_error(self) -> bool:
        """True when ``error.type`` is set or the span status is ERROR."""
        return bool(self.error_type) or self.span.status.code == Status.STATUS_CODE_ERROR

    def attribute(self, key: str) -> object:
        """A span attribute, else a resource attribute, decoded; ``None`` when absent."""
        value = self.attributes.get(key)
        if value is None:
            value = self.resource_attributes.get(key)
        return None if value is None else any_value(value)


def iter_spans(request: ExportTraceServiceRequest) -> Iterator[tuple[Resource, str, Span]]:
    """Every span of the request with its resource and scope name."""
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            for span in scope_spans.spans:
                yield resource, scope_name, span


def extract_genai_spans(request: ExportTraceServiceRequest) -> list[GenAISpan]:
    """The GenAI spans of ``request``, in order; other spans are skipped after a look at their keys."""
    found: list[GenAISpan] = []
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        resource_values: dict[str, AnyValue] | None = None
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            for span in scope_spans.spans:
                values = {kv.key: kv.value for kv in span.attributes}
                for gate in _GATE_KEYS:
                    if gate in values:
                        break
                else:
                    continue
                if resource_values is None:
                    resource_values = {kv.key: kv.value for kv in resource.attributes}
                found.append(_normalise(resource, resource_values, scope_name, span, values))
    return found


def _normalise(
    resource: Resource,
    resource_values: dict[str, AnyValue],
    scope_name: str,
    span: Span,
    values: dict[str, AnyValue],
) -> GenAISpan:
    convention = "gen_ai"
    operation = _str(values, attrs.GEN_AI_OPERATION_NAME)
    provider = _str(values, attrs.GEN_AI_PROVIDER_NAME)
    if not provider:
        provider = _str(values, attrs.GEN_AI_SYSTEM)
        if provider:
            convention = "gen_ai_legacy"
    request_model = _str(values, attrs.GEN_AI_REQUEST_MODEL)
    input_tokens = _first_int(values, attrs.GEN_AI_USAGE_INPUT_TOKENS, attrs.GEN_AI_USAGE_PROMPT_TOKENS)
    output_tokens = _first_int(values, attrs.GEN_AI_USAGE_OUTPUT_TOKENS, attrs.GEN_AI_USAGE_COMPLETION_TOKENS)
    cache_read = _int(values, attrs.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)
    cache_write = _first_int(
        values, attrs.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, attrs.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
    )
    reasoning = _int(values, attrs.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)
    if _OI_SPAN_KIND in values and not operation:
        convention = "openinference"
        operation = _OI_KIND_TO_OPERATION.get(_str(values, _OI_SPAN_KIND).upper(), "")
        provider = provider or _str(values, _OI_PROVIDER) or _str(values, _OI_SYSTEM)
        request_model = request_model or _str(values, _OI_MODEL)
        if input_tokens is None:
            input_tokens = _int(values, _OI_PROMPT_TOKENS)
        if output_tokens is None:
            output_tokens = _int(values, _OI_COMPLETION_TOKENS)
        cache_read = cache_read if cache_read is not None else _int(values, _OI_CACHE_READ)
        cache_write = cache_write if cache_write is not None else _int(values, _OI_CACHE_WRITE)
        reasoning = reasoning if reasoning is not None else _int(values, _OI_REASONING)
    elif not operation and convention == "gen_ai_legacy":
        operation = "chat"
    provider = attrs.PROVIDER_NAME_VALUE_RENAMES.get(provider, provider)
    # The conventions count cached input inside input_tokens. A source that reports fewer input tokens
    # than its cache reads and writes together used the raw Anthropic accounting, which leaves them out.
    cached = (cache_read or 0) + (cache_write or 0)
    if input_tokens is not None and cached and input_tokens < cached:
        input_tokens += cached
    return GenAISpan(
        resource=resource,
        resource_attributes=resource_values,
        scope_name=scope_name,
        span=span,
        attributes=values,
        convention=convention,
        operation=operation,
        provider=provider,
        request_model=request_model,
        response_model=_str(values, attrs.GEN_AI_RESPONSE_MODEL),
        response_id=_str(values, attrs.GEN_AI_RESPONSE_ID),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        error_type=_str(values, attrs.ERROR_TYPE),
        server_address=_str(values, attrs.SERVER_ADDRESS),
        server_port=_int(values, attrs.SERVER_PORT),
        time_to_first_chunk_s=_float(values, attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        cost_amount=_float(values, attrs.GEN_AI_USAGE_COST_AMOUNT),
        cost_currency=_str(values, attrs.GEN_AI_USAGE_COST_CURRENCY),
    )
