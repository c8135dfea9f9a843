"""Metric dimensions of a GenAI span: the configured attribute values, read once per span.

Well-known names read the normalised :class:`~collector.genai.spans.GenAISpan` fields, so legacy and
OpenInference senders land in the same series as current ones. Any other name is looked up in the
span's attributes, then in its resource's (``user``, ``feature``, ``deployment.environment.name``).
A missing value is the empty string, which exporters leave out, as the Collector's spanmetrics does.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from collector.genai.spans import GenAISpan, any_value
from otel_llm.conventions import attributes as attrs

__all__ = [
    "DEFAULT_DIMENSIONS",
    "DEFAULT_RESOURCE_KEYS",
    "OTHER_ERROR",
    "Dimensions",
    "error_type",
    "resource_key",
]

#: Dimensions every derived GenAI metric carries unless configured otherwise.
DEFAULT_DIMENSIONS: tuple[str, ...] = (
    "service.name",
    attrs.GEN_AI_OPERATION_NAME,
    attrs.GEN_AI_PROVIDER_NAME,
    attrs.GEN_AI_REQUEST_MODEL,
    attrs.GEN_AI_RESPONSE_MODEL,
    attrs.ERROR_TYPE,
)
#: Resource attributes that identify a series' resource. Others (``process.pid``, ``host.name``) would
#: fork counters on every restart, so they are left out of the key and of the exported resource.
DEFAULT_RESOURCE_KEYS: tuple[str, ...] = (
    "service.name",
    "service.namespace",
    "service.version",
    "deployment.environment.name",
)
#: ``error.type`` for a span whose status is ERROR but that names no error type.
OTHER_ERROR = "_OTHER"


def error_type(span: GenAISpan) -> str:
    """``error.type``, ``_OTHER`` for an ERROR status without one, else empty."""
    return span.error_type_label


def _text(value: AnyValue | None) -> str:
    if value is None:
        return ""
    if value.string_value:
        return value.string_value
    decoded = any_value(value)
    if decoded is None or isinstance(decoded, list | dict):
        return ""
    if isinstance(decoded, bool):
        return "true" if decoded else "false"
    return str(decoded)


def _generic(key: str) -> Callable[[GenAISpan], str]:
    def read(span: GenAISpan) -> str:
        value = span.attributes.get(key)
        if value is None:
            value = span.resource_attributes.get(key)
        return _text(value)

    return read


_KNOWN: dict[str, Callable[[GenAISpan], str]] = {
    "service.name": lambda s: s.service_name,
    attrs.GEN_AI_OPERATION_NAME: lambda s: s.operation,
    attrs.GEN_AI_PROVIDER_NAME: lambda s: s.provider,
    attrs.GEN_AI_SYSTEM: lambda s: s.provider,
    attrs.GEN_AI_REQUEST_MODEL: lambda s: s.request_model,
    attrs.GEN_AI_RESPONSE_MODEL: lambda s: s.response_model,
    attrs.ERROR_TYPE: error_type,
    attrs.SERVER_ADDRESS: lambda s: s.server_address,
    attrs.SERVER_PORT: lambda s: "" if s.server_port is None else str(s.server_port),
    attrs.GEN_AI_AGENT_NAME: lambda s: s.agent_name,
    attrs.GEN_AI_TOOL_NAME: lambda s: s.tool_name,
}


# Dimension name -> GenAISpan attribute or property holding its text, for operator.attrgetter.
_FIELDS: dict[str, str] = {
    "service.name": "service_name",
    attrs.GEN_AI_OPERATION_NAME: "operation",
    attrs.GEN_AI_PROVIDER_NAME: "provider",
    attrs.GEN_AI_SYSTEM: "provider",
    attrs.GEN_AI_REQUEST_MODEL: "request_model",
    attrs.GEN_AI_RESPONSE_MODEL: "response_model",
    attrs.ERROR_TYPE: "error_type_label",
    attrs.SERVER_ADDRESS: "server_address",
    attrs.GEN_AI_AGENT_NAME: "agent_name",
    attrs.GEN_AI_TOOL_NAME: "tool_name",
}
_INTERNED: dict[tuple[str, ...], tuple[str, ...]] = {}


class Dimensions:
    """Reads a fixed list of dimension values from spans; immutable and thread-safe."""

    __slots__ = ("_getter", "_readers", "names")

    def __init__(self, names: Sequence[str]) -> None:
        # Interned, so that processors configured alike share the tuple and the per-span cache hits.
        key = tuple(names)
        self.names = _INTERNED.setdefault(key, key)
        self._readers = tuple(_KNOWN.get(name) or _generic(name) for name in self.names)
        # When every dimension is a span field (the defaults are), one C-level attrgetter reads them all.
        fields = [_FIELDS.get(name) for name in self.names]
        self._getter: Callable[[GenAISpan], tuple[str, ...]] | None = None
        if len(fields) > 1 and all(fields):
            self._getter = operator.attrgetter(*fields)  # type: ignore[arg-type]

    def values(self, span: GenAISpan) -> tuple[str, ...]:
        """The dimension values of ``span``, in ``names`` order (cached on the span per name list)."""
        cached = span.dimension_cache
        if cached is not None and cached[0] is self.names:
            return cached[1]
        getter = self._getter
        values = getter(span) if getter is not None else tuple([read(span) for read in self._readers])
        span.dimension_cache = (self.names, values)
        return values


def resource_key(span: GenAISpan, keys: Sequence[str]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(key values, exported attributes) of the span's resource for the given key attributes."""
    values = span.resource_attributes
    texts = tuple(_text(values.get(key)) for key in keys)
    if not texts[0] and keys and keys[0] == "service.name":
        texts = (span.service_name, *texts[1:])
    return texts, tuple((key, text) for key, text in zip(keys, texts, strict=True) if text)
