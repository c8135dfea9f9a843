"""Trace context of the current GenAI call, for user feedback.

An application that shows an LLM answer can hand these ids to its UI; when the user rates the
answer, the rating is sent back with them, and the collector joins it to the span.

    from otel_llm.feedback import current_call, last_call

    reply = client.chat.completions.create(...)
    ids = last_call()            # right after a non-streamed call on this thread/task
    # or, inside your own span around the call: current_call()
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from opentelemetry import trace

from otel_llm.conventions import attributes as names

__all__ = ["CallIds", "current_call", "last_call"]


@dataclass(frozen=True)
class CallIds:
    """Ids of one GenAI call: W3C trace id and span id (lower-case hex) and the provider's response id."""

    trace_id: str
    span_id: str
    response_id: str | None


# Set by the instrumentation when a call ends; formatted only when read.
_LAST: contextvars.ContextVar[tuple[trace.SpanContext, str | None] | None] = contextvars.ContextVar(
    "otel_llm_last_call", default=None
)


def _ids(span: trace.Span) -> CallIds | None:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    attributes = getattr(span, "attributes", None) or {}
    response_id = attributes.get(names.GEN_AI_RESPONSE_ID)
    return CallIds(
        trace_id=format(ctx.trace_id, "032x"),
        span_id=format(ctx.span_id, "016x"),
        response_id=response_id if isinstance(response_id, str) else None,
    )


def current_call() -> CallIds | None:
    """Ids of the current span (None when there is no valid one).

    `response_id` is filled when the current span is a GenAI span whose response has been read (the
    SDK span API does not expose attributes, so it is None with a no-op tracer).
    """
    return _ids(trace.get_current_span())


def last_call() -> CallIds | None:
    """Ids of the last GenAI call that ended in this thread or asyncio task, or None."""
    last = _LAST.get()
    if last is None:
        return None
    ctx, response_id = last
    return CallIds(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), response_id)


def remember(span: trace.Span, response_id: str | None) -> None:
    """Called by the instrumentation when a GenAI call ends."""
    _LAST.set((span.get_span_context(), response_id))
