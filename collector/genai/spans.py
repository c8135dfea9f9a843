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

import json
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otel_llm.conventions import attributes as attrs

__all__ = ["GenAISpan", "any_value", "extract_genai_spans", "retrieval_documents"]

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
_OI_RETRIEVAL_PREFIX = "retrieval.documents."
_OI_TOOL_NAME = "tool.name"
# OpenInference `llm.provider` / `llm.system` values -> gen_ai.provider.name values.
_OI_PROVIDER_VALUES = {
    "google": "gcp.gen_ai",
    "vertexai": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "aws": "aws.bedrock",
    "xai": "x_ai",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
}
_OI_KIND_TO_OPERATION = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
    "RETRIEVER": "retrieval",
}

# Field aliases seen in the field, in the order they are tried after the standard name.
_CACHE_READ_KEYS = (
    attrs.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    *(
        k
        for k, v in attrs.NONSTANDARD_ATTRIBUTE_ALIASES.items()
        if v == attrs.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
    ),
)
_CACHE_WRITE_KEYS = (
    attrs.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    attrs.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    *(
        k
        for k, v in attrs.NONSTANDARD_ATTRIBUTE_ALIASES.items()
        if v == attrs.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS
    ),
)
_SERVICE_TIER_KEYS = (
    attrs.OPENAI_RESPONSE_SERVICE_TIER,
    attrs.GEN_AI_OPENAI_RESPONSE_SERVICE_TIER,
    attrs.OPENAI_REQUEST_SERVICE_TIER,
    attrs.GEN_AI_OPENAI_REQUEST_SERVICE_TIER,
)
_STREAM_KEYS = (
    attrs.GEN_AI_REQUEST_STREAM,
    *(k for k, v in attrs.NONSTANDARD_ATTRIBUTE_ALIASES.items() if v == attrs.GEN_AI_REQUEST_STREAM),
)

# Keys whose presence makes a span a GenAI span.
_GATE_KEYS = (attrs.GEN_AI_OPERATION_NAME, attrs.GEN_AI_SYSTEM, attrs.GEN_AI_PROVIDER_NAME, _OI_SPAN_KIND)
_GATE_SET = frozenset(_GATE_KEYS)
_PROVIDER_RENAMES = dict(attrs.PROVIDER_NAME_VALUE_RENAMES)
_OPERATION = attrs.GEN_AI_OPERATION_NAME
_PROVIDER = attrs.GEN_AI_PROVIDER_NAME
_SYSTEM = attrs.GEN_AI_SYSTEM
_REQUEST_MODEL = attrs.GEN_AI_REQUEST_MODEL
_RESPONSE_MODEL = attrs.GEN_AI_RESPONSE_MODEL
_RESPONSE_ID = attrs.GEN_AI_RESPONSE_ID
_INPUT = attrs.GEN_AI_USAGE_INPUT_TOKENS
_PROMPT = attrs.GEN_AI_USAGE_PROMPT_TOKENS
_OUTPUT = attrs.GEN_AI_USAGE_OUTPUT_TOKENS
_COMPLETION = attrs.GEN_AI_USAGE_COMPLETION_TOKENS
_ERROR_TYPE = attrs.ERROR_TYPE
_SERVER_ADDRESS = attrs.SERVER_ADDRESS
_SERVER_PORT = attrs.SERVER_PORT
# Keys _normalise does not read but processors do (drift's finish reasons and messages); picked in the
# same pass so that reading them needs no full attribute map. Never part of _RARE.
_PICKED = frozenset(
    {attrs.GEN_AI_RESPONSE_FINISH_REASONS, attrs.GEN_AI_INPUT_MESSAGES, attrs.GEN_AI_OUTPUT_MESSAGES}
)
# Every key _normalise reads, and _PICKED; others are not decoded on the hot path.
_WANTED = frozenset(
    {
        *_GATE_KEYS,
        *_PICKED,
        attrs.GEN_AI_REQUEST_MODEL,
        attrs.GEN_AI_RESPONSE_MODEL,
        attrs.GEN_AI_RESPONSE_ID,
        attrs.GEN_AI_USAGE_INPUT_TOKENS,
        attrs.GEN_AI_USAGE_PROMPT_TOKENS,
        attrs.GEN_AI_USAGE_OUTPUT_TOKENS,
        attrs.GEN_AI_USAGE_COMPLETION_TOKENS,
        *_CACHE_READ_KEYS,
        *_CACHE_WRITE_KEYS,
        attrs.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
        attrs.GEN_AI_TOOL_NAME,
        attrs.GEN_AI_TOOL_TYPE,
        attrs.GEN_AI_AGENT_NAME,
        attrs.GEN_AI_WORKFLOW_NAME,
        attrs.ERROR_TYPE,
        attrs.SERVER_ADDRESS,
        attrs.SERVER_PORT,
        attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
        attrs.GEN_AI_USAGE_COST_AMOUNT,
        attrs.GEN_AI_USAGE_COST_CURRENCY,
        *_SERVICE_TIER_KEYS,
        *_STREAM_KEYS,
        _OI_MODEL,
        _OI_PROVIDER,
        _OI_SYSTEM,
        _OI_PROMPT_TOKENS,
        _OI_COMPLETION_TOKENS,
        _OI_CACHE_READ,
        _OI_CACHE_WRITE,
        _OI_REASONING,
        _OI_TOOL_NAME,
    }
)
# The keys of _WANTED that a plain chat span usually lacks; when none is present they are not read.
_RARE = _WANTED - {
    *_PICKED,
    attrs.GEN_AI_OPERATION_NAME,
    attrs.GEN_AI_PROVIDER_NAME,
    attrs.GEN_AI_SYSTEM,
    attrs.GEN_AI_REQUEST_MODEL,
    attrs.GEN_AI_RESPONSE_MODEL,
    attrs.GEN_AI_RESPONSE_ID,
    attrs.GEN_AI_USAGE_INPUT_TOKENS,
    attrs.GEN_AI_USAGE_PROMPT_TOKENS,
    attrs.GEN_AI_USAGE_OUTPUT_TOKENS,
    attrs.GEN_AI_USAGE_COMPLETION_TOKENS,
    attrs.ERROR_TYPE,
    attrs.SERVER_ADDRESS,
    attrs.SERVER_PORT,
}


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


def _bool(values: dict[str, AnyValue], keys: tuple[str, ...]) -> bool:
    for key in keys:
        value = values.get(key)
        if value is None:
            continue
        if value.WhichOneof("value") == "bool_value":
            return value.bool_value
        return _str(values, key).lower() == "true"
    return False


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
    #: The span attributes ``_normalise`` reads (a subset; see :attr:`attributes` for all of them).
    values: dict[str, AnyValue]
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
    agent_name: str = ""
    tool_name: str = ""
    tool_type: str = ""
    service_tier: str = ""
    streaming: bool = False
    extra: dict[str, object] = field(default_factory=dict)
    #: Set by the call deduplicator (see :mod:`collector.genai.calls`): ``None`` until decided, then
    #: whether this span counts as a call (requests, duration, errors) and whether its usage counts
    #: (tokens, cost). A duplicate of an already counted call has both False, or only ``count_usage``
    #: when the first span of the call carried no usage.
    count_call: bool | None = None
    count_usage: bool = True
    #: Cost in USD and where it came from (``provider`` or ``local``), set by the ``cost`` processor.
    cost_usd: float | None = None
    cost_source: str = ""
    #: (dimension names, values) last read by :class:`collector.genai.dimensions.Dimensions`, so two
    #: processors with the same dimensions read them once.
    dimension_cache: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    _all_attributes: dict[str, AnyValue] | None = None
    _service_name: str | None = None
    _is_error: bool | None = None

    @property
    def attributes(self) -> dict[str, AnyValue]:
        """Every span attribute by key (built on first use; changes to it are kept for later readers)."""
        found = self._all_attributes
        if found is None:
            found = self._all_attributes = {kv.key: kv.value for kv in self.span.attributes}
        return found

    @property
    def has_usage(self) -> bool:
        """True when the span reported input or output tokens."""
        return self.input_tokens is not None or self.output_tokens is not None

    @property
    def model(self) -> str:
        """The response model, else the request model: what was billed."""
        return self.response_model or self.request_model

    @property
    def service_name(self) -> str:
        """``service.name`` of the resource, or ``unknown_service`` as the SDKs default it."""
        found = self._service_name
        if found is None:
            found = self._service_name = _str(self.resource_attributes, "service.name") or "unknown_service"
        return found

    @property
    def duration_s(self) -> float:
        """End minus start in seconds; a span that ends before it starts counts as 0."""
        return max(0, self.span.end_time_unix_nano - self.span.start_time_unix_nano) / 1e9

    @property
    def is_error(self) -> bool:
        """True when ``error.type`` is set or the span status is ERROR."""
        found = self._is_error
        if found is None:
            found = self._is_error = (
                bool(self.error_type) or self.span.status.code == Status.STATUS_CODE_ERROR
            )
        return found

    @property
    def error_type_label(self) -> str:
        """``error.type`` as a metric dimension: the span's, ``_OTHER`` for an ERROR status without one."""
        if self.error_type:
            return self.error_type
        return "_OTHER" if self.is_error else ""

    def attribute(self, key: str) -> object:
        """A span attribute, else a resource attribute, decoded; ``None`` when absent."""
        value = self.attributes.get(key)
        if value is None:
            value = self.resource_attributes.get(key)
        return None if value is None else any_value(value)


def extract_genai_spans(request: ExportTraceServiceRequest) -> list[GenAISpan]:
    """The GenAI spans of ``request``, in order; other spans are skipped after a look at their keys."""
    found: list[GenAISpan] = []
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        resource_values: dict[str, AnyValue] | None = None
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            for span in scope_spans.spans:
                # One pass over the keys; value wrappers (the expensive part) are built only for the
                # keys normalisation reads, and nothing is kept for spans without a gate key.
                values: dict[str, AnyValue] | None = None
                for kv in span.attributes:
                    key = kv.key
                    if key in _WANTED:
                        if values is None:
                            values = {}
                        values[key] = kv.value
                if values is None or _GATE_SET.isdisjoint(values):
                    continue
                if resource_values is None:
                    resource_values = {kv.key: kv.value for kv in resource.attributes}
                found.append(_normalise(resource, resource_values, scope_name, span, values))
    return found


def _vs(value: AnyValue | None) -> str:
    """A value as text (``""`` when absent); the typed field first, ``WhichOneof`` only as a fallback."""
    if value is None:
        return ""
    text = value.string_value
    if text:
        return text
    decoded = any_value(value)
    return "" if decoded is None or isinstance(decoded, list | dict) else str(decoded)


def _vi(value: AnyValue | None) -> int | None:
    """A value as a count (``None`` when absent or not a number)."""
    if value is None:
        return None
    number = value.int_value
    if number:
        return number
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return 0
    if kind == "double_value":
        # Negative, NaN and infinite counts are bad data, not a count: treated as absent (never guessed).
        number_f = value.double_value
        return int(number_f) if 0 <= number_f < _MAX_COUNT else None
    if kind == "string_value":
        try:
            return int(value.string_value)
        except ValueError:
            return None
    return None


# Larger "token counts" are garbage (2**53: beyond exact doubles), and int() of inf would raise.
_MAX_COUNT = float(2**53)


def _first(values: dict[str, AnyValue], keys: tuple[str, ...]) -> AnyValue | None:
    for key in keys:
        found = values.get(key)
        if found is not None:
            return found
    return None


def _normalise(
    resource: Resource,
    resource_values: dict[str, AnyValue],
    scope_name: str,
    span: Span,
    values: dict[str, AnyValue],
) -> GenAISpan:
    # Hot path (profiled): ``values`` holds only keys of _WANTED. The common keys are read inline
    # (typed field first, a decoding helper only for an unusual type); the rarer ones (cache and
    # reasoning usage, agents, tools, cost, OpenInference, ...) are skipped with one set test.
    get = values.get
    convention = "gen_ai"
    v = get(_OPERATION)
    operation = (v.string_value or _vs(v)) if v is not None else ""
    v = get(_PROVIDER)
    provider = (v.string_value or _vs(v)) if v is not None else ""
    if not provider:
        provider = _vs(get(_SYSTEM))
        if provider:
            convention = "gen_ai_legacy"
    v = get(_REQUEST_MODEL)
    request_model = (v.string_value or _vs(v)) if v is not None else ""
    v = get(_RESPONSE_MODEL)
    response_model = (v.string_value or _vs(v)) if v is not None else ""
    v = get(_INPUT) or get(_PROMPT)
    input_tokens = (v.int_value or _vi(v)) if v is not None else None
    v = get(_OUTPUT) or get(_COMPLETION)
    output_tokens = (v.int_value or _vi(v)) if v is not None else None
    v = get(_RESPONSE_ID)
    response_id = (v.string_value or _vs(v)) if v is not None else ""
    v = get(_ERROR_TYPE)
    error_type = (v.string_value or _vs(v)) if v is not None else ""
    v = get(_SERVER_ADDRESS)
    server_address = (v.string_value or _vs(v)) if v is not None else ""
    v = get(_SERVER_PORT)
    server_port = (v.int_value or _vi(v)) if v is not None else None
    if _RARE.isdisjoint(values):
        if not operation and convention == "gen_ai_legacy":
            operation = "chat"
        return GenAISpan(
            resource,
            resource_values,
            scope_name,
            span,
            values,
            convention,
            operation,
            _PROVIDER_RENAMES.get(provider, provider),
            request_model,
            response_model,
            response_id,
            input_tokens,
            output_tokens,
            None,
            None,
            None,
            error_type,
            server_address,
            server_port,
            None,
            None,
            "",
        )
    cache_read = _vi(_first(values, _CACHE_READ_KEYS))
    cache_write = _vi(_first(values, _CACHE_WRITE_KEYS))
    reasoning = _vi(get(attrs.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS))
    tool_name = _vs(get(attrs.GEN_AI_TOOL_NAME))
    if not operation and _OI_SPAN_KIND in values:
        convention = "openinference"
        operation = _OI_KIND_TO_OPERATION.get(_vs(get(_OI_SPAN_KIND)).upper(), "")
        if not provider:
            provider = (_vs(get(_OI_PROVIDER)) or _vs(get(_OI_SYSTEM))).lower()
            provider = _OI_PROVIDER_VALUES.get(provider, provider)
        request_model = request_model or _vs(get(_OI_MODEL))
        # OpenInference records the model the response named; it is both what was asked and billed.
        response_model = response_model or request_model
        tool_name = tool_name or _vs(get(_OI_TOOL_NAME))
        if input_tokens is None:
            input_tokens = _vi(get(_OI_PROMPT_TOKENS))
        if output_tokens is None:
            output_tokens = _vi(get(_OI_COMPLETION_TOKENS))
        cache_read = cache_read if cache_read is not None else _vi(get(_OI_CACHE_READ))
        cache_write = cache_write if cache_write is not None else _vi(get(_OI_CACHE_WRITE))
        reasoning = reasoning if reasoning is not None else _vi(get(_OI_REASONING))
    elif not operation and convention == "gen_ai_legacy":
        operation = "chat"
    # The conventions count cached input inside input_tokens. A source that reports fewer input tokens
    # than its cache reads and writes together used the raw Anthropic accounting, which leaves them out.
    if cache_read or cache_write:
        cached = (cache_read or 0) + (cache_write or 0)
        if input_tokens is not None and input_tokens < cached:
            input_tokens += cached
    ttfc = get(attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
    cost = get(attrs.GEN_AI_USAGE_COST_AMOUNT)
    stream = _first(values, _STREAM_KEYS)
    return GenAISpan(
        resource,
        resource_values,
        scope_name,
        span,
        values,
        convention,
        operation,
        _PROVIDER_RENAMES.get(provider, provider),
        request_model,
        response_model,
        response_id,
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        reasoning,
        error_type,
        server_address,
        server_port,
        None if ttfc is None else _float(values, attrs.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        None if cost is None else _float(values, attrs.GEN_AI_USAGE_COST_AMOUNT),
        _vs(get(attrs.GEN_AI_USAGE_COST_CURRENCY)),
        agent_name=_vs(get(attrs.GEN_AI_AGENT_NAME)),
        tool_name=tool_name,
        tool_type=_vs(get(attrs.GEN_AI_TOOL_TYPE)),
        service_tier=_vs(_first(values, _SERVICE_TIER_KEYS)),
        streaming=stream is not None and _bool(values, _STREAM_KEYS),
    )


def retrieval_documents(span: GenAISpan) -> tuple[int | None, list[float]]:
    """Number of documents a retrieval span returned and the scores they carry.

    Reads ``gen_ai.retrieval.documents`` (a structured array of ``{id?, score?}`` or its JSON string)
    or OpenInference's flattened ``retrieval.documents.<i>.document.score``. The count is ``None`` when
    the span does not say (the attribute is opt-in), never a guess.
    """
    value = span.attributes.get(attrs.GEN_AI_RETRIEVAL_DOCUMENTS)
    if value is not None:
        decoded = any_value(value)
        if isinstance(decoded, str):
            try:
                decoded = json.loads(decoded)
            except ValueError:
                return None, []
        if not isinstance(decoded, list):
            return None, []
        scores: list[float] = []
        for doc in decoded:
            score = doc.get("score") if isinstance(doc, dict) else None
            if isinstance(score, int | float) and not isinstance(score, bool):
                scores.append(float(score))
        return len(decoded), scores
    indices: set[str] = set()
    oi_scores: list[float] = []
    for key in span.attributes:
        if not key.startswith(_OI_RETRIEVAL_PREFIX):
            continue
        index, _, rest = key[len(_OI_RETRIEVAL_PREFIX) :].partition(".")
        indices.add(index)
        if rest == "document.score":
            score_value = _float(span.attributes, key)
            if score_value is not None:
                oi_scores.append(score_value)
    return (len(indices), oi_scores) if indices else (None, [])
