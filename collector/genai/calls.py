"""Count each LLM call once, and group inference and tool calls under their agent invocation.

Merge rule (no waiting). The same call can arrive as two nested GenAI spans: an SDK's own span and an
instrumentation's, or a framework span around the client span. :class:`CallDeduplicator` remembers
recent calls in bounded maps (``max_entries`` each, ``window_s`` old at most) keyed by
``gen_ai.response.id``, by (trace id, span id) and by (trace id, parent span id). A span is a
duplicate of a remembered call when

- it has the same operation and ``gen_ai.response.id``, or
- its parent, or one of its children, is a remembered span with the same operation, provider and model,
  and usage is not reported on both (two spans that both carry usage are two calls, e.g. retries).

The first span of a call to arrive counts the call (requests, duration, errors); its usage (tokens,
cost) counts too. A later duplicate counts nothing, except its usage when the first span had none
(an outer framework span without usage arrives before the client span that has it). Nothing waits:
relatives that arrive more than ``window_s`` apart, or after ``max_entries`` newer calls pushed them
out, are counted twice. Spans of one trace spread over several collector workers are not merged
unless a load balancer routes by trace id.

Agents. :class:`AgentCallCounter` keeps, per trace, the inference and tool spans that were counted and
not yet claimed. When an ``invoke_agent`` span arrives, it claims the pending spans of its trace that
lie within its start and end times, so a nested agent (which ends, and so arrives, first) claims its own
calls before the outer one. Calls that arrive after their agent span are not attributed to it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from collector.genai.spans import GenAISpan
from otel_llm.conventions import attributes as attrs

__all__ = ["INFERENCE_OPERATIONS", "AgentCallCounter", "CallDeduplicator", "mark_calls"]

_Op = attrs.GenAiOperationNameValues
#: Operations whose spans are model calls (deduplicated, counted as inference calls of an agent).
INFERENCE_OPERATIONS = frozenset({_Op.CHAT, _Op.GENERATE_CONTENT, _Op.TEXT_COMPLETION, _Op.EMBEDDINGS})


class _Call:
    __slots__ = ("signature", "usage_counted")

    def __init__(self, signature: tuple[str, str, str], usage_counted: bool) -> None:
        self.signature = signature
        self.usage_counted = usage_counted


class _Bounded:
    """A dict that forgets its oldest entries past ``limit`` or ``window_ns``."""

    __slots__ = ("_items", "limit", "window_ns")

    def __init__(self, limit: int, window_ns: int) -> None:
        # OrderedDict: popping the oldest is O(1); a plain dict's first key is found by skipping the
        # deleted slots before it, which turns a FIFO of 100k entries quadratic.
        self._items: OrderedDict[object, tuple[int, _Call]] = OrderedDict()
        self.limit = limit
        self.window_ns = window_ns

    def get(self, key: object) -> _Call | None:
        found = self._items.get(key)
        return None if found is None else found[1]

    def put(self, key: object, call: _Call, now_ns: int) -> None:
        items = self._items
        items.pop(key, None)
        items[key] = (now_ns, call)
        if len(items) > self.limit:
            items.popitem(last=False)

    def expire(self, now_ns: int) -> None:
        items = self._items
        cutoff = now_ns - self.window_ns
        while items:
            key = next(iter(items))
            if items[key][0] >= cutoff:
                break
            items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def mark_calls(spans: list[GenAISpan], now_ns: int, calls: CallDeduplicator, merge_duplicates: bool) -> None:
    """Marks the spans no earlier processor marked: merged by ``calls``, or else each one its own call."""
    if merge_duplicates:
        calls.mark(spans, now_ns)
    else:
        for span in spans:
            if span.count_call is None:
                span.count_call = True


class CallDeduplicator:
    """Marks each inference span of a batch as a new call or a duplicate; thread-safe."""

    def __init__(self, max_entries: int = 100_000, window_s: float = 600.0) -> None:
        window_ns = int(window_s * 1e9)
        self._lock = threading.Lock()
        self._by_response = _Bounded(max_entries, window_ns)
        self._by_span = _Bounded(max_entries, window_ns)
        self._by_parent = _Bounded(max_entries, window_ns)

    def __len__(self) -> int:
        return len(self._by_span)

    def mark(self, spans: Iterable[GenAISpan], now_ns: int) -> list[GenAISpan]:
        """Set ``count_call``/``count_usage`` on spans not yet marked; return the merged duplicates."""
        merged: list[GenAISpan] = []
        with self._lock:
            for table in (self._by_response, self._by_span, self._by_parent):
                table.expire(now_ns)
            for span in spans:
                if span.count_call is not None:
                    continue
                if span.operation not in INFERENCE_OPERATIONS:
                    span.count_call = True
                    continue
                if self._mark_one(span, now_ns):
                    merged.append(span)
        return merged

    def _mark_one(self, span: GenAISpan, now_ns: int) -> bool:
        raw = span.span
        trace_id = raw.trace_id
        span_key = (trace_id, raw.span_id)
        parent_key = (trace_id, raw.parent_span_id) if raw.parent_span_id else None
        response_key = (span.operation, span.response_id) if span.response_id else None
        signature = (span.operation, span.provider, span.request_model or span.response_model)
        has_usage = span.has_usage

        call: _Call | None = None
        if response_key is not None:
            call = self._by_response.get(response_key)
        if call is None:
            for candidate in (
                self._by_span.get(parent_key) if parent_key is not None else None,  # parent seen first
                self._by_parent.get(span_key),  # a child seen first
            ):
                if (
                    candidate is not None
                    and candidate.signature == signature
                    and not (candidate.usage_counted and has_usage)
                ):
                    call = candidate
                    break
        duplicate = call is not None
        if call is None:
            call = _Call(signature, has_usage)
            span.count_call = True
            span.count_usage = True
        else:
            span.count_call = False
            span.count_usage = has_usage and not call.usage_counted
            if span.count_usage:
                call.usage_counted = True
        self._by_span.put(span_key, call, now_ns)
        if parent_key is not None:
            self._by_parent.put(parent_key, call, now_ns)
        if response_key is not None:
            self._by_response.put(response_key, call, now_ns)
        return duplicate


class AgentCallCounter:
    """Inference and tool calls per agent invocation, grouped by trace and time containment."""

    def __init__(self, max_entries: int = 100_000, window_s: float = 600.0) -> None:
        self._lock = threading.Lock()
        # trace id -> (first seen ns, [(start, end, is_tool)]); oldest trace first
        self._pending: OrderedDict[bytes, tuple[int, list[tuple[int, int, bool]]]] = OrderedDict()
        self._entries = 0
        self.max_entries = max_entries
        self.window_ns = int(window_s * 1e9)

    def __len__(self) -> int:
        """Pending calls over all traces (bounded by ``max_entries``)."""
        return self._entries

    def _drop_oldest(self) -> None:
        self._entries -= len(self._pending.popitem(last=False)[1][1])

    def note(self, spans: Iterable[GenAISpan], now_ns: int) -> None:
        """Remember counted inference and tool spans until an agent span claims them."""
        with self._lock:
            pending = self._pending
            for span in spans:
                raw = span.span
                entry = pending.get(raw.trace_id)
                if entry is None:
                    entry = pending[raw.trace_id] = (now_ns, [])
                entry[1].append(
                    (raw.start_time_unix_nano, raw.end_time_unix_nano, span.operation == _Op.EXECUTE_TOOL)
                )
                self._entries += 1
                while self._entries > self.max_entries and pending:
                    self._drop_oldest()
            cutoff = now_ns - self.window_ns
            while pending and pending[next(iter(pending))][0] < cutoff:
                self._drop_oldest()

    def claim(self, agent: GenAISpan) -> tuple[int, int]:
        """(inference calls, tool calls) inside the agent span; they are not counted again."""
        raw = agent.span
        start, end = raw.start_time_unix_nano, raw.end_time_unix_nano
        with self._lock:
            entry = self._pending.get(raw.trace_id)
            if entry is None:
                return 0, 0
            inference = tools = 0
            rest: list[tuple[int, int, bool]] = []
            for call in entry[1]:
                if start <= call[0] and call[1] <= end:
                    if call[2]:
                        tools += 1
                    else:
                        inference += 1
                else:
                    rest.append(call)
            self._entries -= len(entry[1]) - len(rest)
            if rest:
                entry[1][:] = rest
            else:
                del self._pending[raw.trace_id]
            return inference, tools
