"""Label sets and names the quality components share, so every writer of one metric uses one label order.

The metric store fixes an instrument's label names on first use; the ``quality`` and ``judge``
processors both write ``otel_llm.evaluation.score``, so its labels live here, not in either of them.
Attribute and metric names come from :mod:`otel_llm.conventions`; only ``host.shared`` keys live here.
"""

from __future__ import annotations

from typing import Final

from collector.genai.dimensions import DEFAULT_RESOURCE_KEYS, resource_key
from collector.genai.spans import GenAISpan
from otel_llm.conventions import attributes as attrs

__all__ = [
    "EVALUATION_LABELS",
    "FEEDBACK_INDEX_KEY",
    "REDACTOR_KEY",
    "SPAN_DIMENSIONS",
    "VARIANTS_KEY",
    "span_dimensions",
    "span_resource",
]

#: ``host.shared`` key of the feedback index (owned by the ``feedback`` extension).
FEEDBACK_INDEX_KEY: Final = "collector.quality.feedback_index"
#: ``host.shared`` key of the list of variant trackers (owned by the ``quality`` processor).
VARIANTS_KEY: Final = "collector.quality.variants"
#: ``host.shared`` key under which the PII processor registers ``redactor(text: str) -> str``.
REDACTOR_KEY: Final = "collector.pii.redactor"

#: Span dimensions every quality metric carries (service and the other resource keys go in the resource).
SPAN_DIMENSIONS: Final[tuple[str, ...]] = (
    attrs.GEN_AI_OPERATION_NAME,
    attrs.GEN_AI_PROVIDER_NAME,
    attrs.GEN_AI_REQUEST_MODEL,
    attrs.GEN_AI_PROMPT_VERSION,
)
#: Labels of ``otel_llm.evaluation.score``.
EVALUATION_LABELS: Final[tuple[str, ...]] = (
    attrs.GEN_AI_EVALUATION_NAME,
    attrs.GEN_AI_EVALUATION_SCORE_LABEL,
    *SPAN_DIMENSIONS,
)


def _text(value: object) -> str:
    if value is None or isinstance(value, list | dict):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def span_dimensions(span: GenAISpan) -> tuple[str, str, str, str]:
    """Values of :data:`SPAN_DIMENSIONS` for ``span``."""
    return (
        span.operation,
        span.provider,
        span.request_model or span.response_model,
        _text(span.attribute(attrs.GEN_AI_PROMPT_VERSION)),
    )


def span_resource(span: GenAISpan) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(resource key, exported resource attributes) of ``span``, as the other derived metrics use."""
    return resource_key(span, DEFAULT_RESOURCE_KEYS)
