"""User feedback: the request model, and the index that joins feedback to the spans it is about.

The ``quality`` processor adds every GenAI response span to :class:`FeedbackIndex` (by trace id, span
id and ``gen_ai.response.id``); the ``feedback`` extension submits feedback to it. Feedback that finds
its span is counted under the span's dimensions at once; feedback that arrives first waits in a
bounded pending list for ``join_window_s`` and is joined when the span comes, else counted as
unjoined (``expired``), never silently dropped. Both structures are bounded (``max_spans``,
``max_pending``); past the bound the oldest span is forgotten and new pending feedback is counted as
unjoined (``overflow``), so a flood of feedback cannot grow memory.

A trace id names the trace's most recent GenAI response span (the answer the user saw).

Thread safety: one lock around both maps; metric writes happen outside it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator

from collector.metrics import MetricStore
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

__all__ = [
    "FeedbackIndex",
    "FeedbackKind",
    "FeedbackRequest",
    "JoinOutcome",
    "SpanRecord",
    "normalised_value",
    "polarity",
]

_Unjoined = attrs.OtelLlmFeedbackUnjoinedReasonValues
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")


class FeedbackKind(StrEnum):
    """Feedback kinds: explicit (thumbs, rating, correction, comment) and implicit signals."""

    THUMBS = "thumbs"
    RATING = "rating"
    CORRECTION = "correction"
    COMMENT = "comment"
    FOLLOW_UP = "follow_up"
    REGENERATE = "regenerate"
    COPY = "copy"
    ABANDONED = "abandoned"


class FeedbackRequest(BaseModel):
    """One feedback item as posted to ``/v1/feedback``; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trace_id: StrictStr | None = Field(None, description="32 lower-case hex digits (W3C trace id).")
    span_id: StrictStr | None = Field(None, description="16 lower-case hex digits.")
    response_id: StrictStr | None = Field(
        None, min_length=1, max_length=256, description="gen_ai.response.id of the answer."
    )
    kind: FeedbackKind
    value: StrictStr | StrictInt | StrictFloat | None = Field(
        None, description="thumbs: up or down; rating: a number from 1 to scale."
    )
    scale: StrictInt | StrictFloat = Field(5, description="Highest rating (ratings run from 1 to scale).")
    text: StrictStr | None = Field(None, max_length=10_000, description="Correction text.")
    comment: StrictStr | None = Field(None, max_length=10_000, description="Optional free-text comment.")

    @model_validator(mode="after")
    def _check(self) -> FeedbackRequest:
        if self.trace_id is None and self.span_id is None and self.response_id is None:
            raise ValueError("give at least one of trace_id, span_id, response_id")
        if self.trace_id is not None and (not _TRACE_ID.match(self.trace_id) or set(self.trace_id) == {"0"}):
            raise ValueError(
                f"trace_id: expected 32 lower-case hex digits, not all zero, got {self.trace_id!r}"
            )
        if self.span_id is not None and (not _SPAN_ID.match(self.span_id) or set(self.span_id) == {"0"}):
            raise ValueError(
                f"span_id: expected 16 lower-case hex digits, not all zero, got {self.span_id!r}"
            )
        if self.kind is FeedbackKind.THUMBS and self.value not in ("up", "down"):
            raise ValueError(f"value: thumbs feedback needs value up or down, got {self.value!r}")
        if self.kind is FeedbackKind.RATING:
            if self.scale <= 1:
                raise ValueError(f"scale: expected a number above 1, got {self.scale!r}")
            if isinstance(self.value, str) or self.value is None or not 1 <= self.value <= self.scale:
                raise ValueError(f"value: rating needs a number from 1 to {self.scale}, got {self.value!r}")
        if self.kind is FeedbackKind.CORRECTION and not self.text:
            raise ValueError("text: correction feedback needs the corrected text")
        if self.kind is FeedbackKind.COMMENT and not self.comment:
            raise ValueError("comment: comment feedback needs a comment")
        if self.kind not in (FeedbackKind.THUMBS, FeedbackKind.RATING) and self.value is not None:
            raise ValueError(f"value: not used with kind {self.kind.value}")
        return self


def normalised_value(item: FeedbackRequest) -> float | None:
    """Thumbs up 1, down 0; a rating mapped to 0..1; ``None`` for other kinds."""
    if item.kind is FeedbackKind.THUMBS:
        return 1.0 if item.value == "up" else 0.0
    if item.kind is FeedbackKind.RATING and isinstance(item.value, int | float):
        return (float(item.value) - 1.0) / (float(item.scale) - 1.0)
    return None


Polarity = Literal["positive", "negative", "neutral"]

# Implicit signals read as: a copied answer was useful; a regenerated, corrected or abandoned one was not.
_KIND_POLARITY: dict[FeedbackKind, Polarity] = {
    FeedbackKind.CORRECTION: "negative",
    FeedbackKind.REGENERATE: "negative",
    FeedbackKind.ABANDONED: "negative",
    FeedbackKind.COPY: "positive",
    FeedbackKind.FOLLOW_UP: "neutral",
    FeedbackKind.COMMENT: "neutral",
}


def polarity(item: FeedbackRequest) -> Polarity:
    """``positive``, ``negative`` or ``neutral`` reading of one item (ratings: above/below the middle)."""
    value = normalised_value(item)
    if value is None:
        return _KIND_POLARITY[item.kind]
    if value > 0.5:
        return "positive"
    if value < 0.5:
        return "negative"
    return "neutral"


@dataclass(slots=True)
class SpanRecord:
    """What the index keeps of one GenAI response span."""

    trace_id: str
    span_id: str
    response_id: str
    resource: tuple[str, ...]
    resource_attributes: tuple[tuple[str, str], ...]
    #: Values of ``_labels.SPAN_DIMENSIONS``.
    dimensions: tuple[str, ...]
    #: (dimension, value) of attributes that variant trackers compare on.
    variants: tuple[tuple[str, str], ...] = ()
    seen: float = 0.0
    feedback: int = 0
    positive: int = 0
    negative: int = 0


@dataclass(frozen=True, slots=True)
class JoinOutcome:
    """Result of one submission: ``joined`` or ``pending``."""

    status: Literal["joined", "pending"]


@dataclass(slots=True)
class _Pending:
    item: FeedbackRequest
    received: float


FEEDBACK_LABELS = (
    attrs.OTEL_LLM_FEEDBACK_KIND,
    attrs.OTEL_LLM_FEEDBACK_POLARITY,
    attrs.GEN_AI_OPERATION_NAME,
    attrs.GEN_AI_PROVIDER_NAME,
    attrs.GEN_AI_REQUEST_MODEL,
    attrs.GEN_AI_PROMPT_VERSION,
)
RATE_LABELS = FEEDBACK_LABELS[2:]


class FeedbackIndex:
    """Recent GenAI response spans by trace id, span id and response id, plus pending feedback.

    ``clock`` returns seconds (monotonic by default); tests pass their own to move time.
    """

    def __init__(
        self,
        store: MetricStore | None,
        *,
        join_window_s: float = 300.0,
        retention_s: float = 1800.0,
        max_spans: int = 100_000,
        max_pending: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.join_window_s = join_window_s
        self.retention_s = retention_s
        self.max_spans = max_spans
        self.max_pending = max_pending
        self.clock = clock
        self._lock = threading.Lock()
        self._spans: OrderedDict[str, SpanRecord] = OrderedDict()  # by span id, oldest first
        self._by_trace: dict[str, str] = {}
        self._by_response: dict[str, str] = {}
        self._pending: OrderedDict[int, _Pending] = OrderedDict()
        self._pending_keys: dict[str, set[int]] = {}
        self._next_pending = 0
        self.listeners: list[Callable[[SpanRecord, FeedbackRequest, Polarity], None]] = []
        self.joined_total = 0
        self.unjoined_total = 0

    # -- sizes (tests, self-checks) ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._spans)

    @property
    def pending(self) -> int:
        """Feedback items waiting for their span."""
        return len(self._pending)

    # -- spans ---------------------------------------------------------------------------------------

    def add_span(self, record: SpanRecord) -> None:
        """Index one response span and join feedback that was waiting for it."""
        now = self.clock()
        record.seen = now
        joined: list[FeedbackRequest] = []
        with self._lock:
            old = self._spans.pop(record.span_id, None)
            if old is not None:
                record.feedback, record.positive, record.negative = old.feedback, old.positive, old.negative
            self._spans[record.span_id] = record
            if record.trace_id:
                self._by_trace[record.trace_id] = record.span_id
            if record.response_id:
                self._by_response[record.response_id] = record.span_id
            while len(self._spans) > self.max_spans:
                _, evicted = self._spans.popitem(last=False)
                self._forget_locked(evicted)
            if self._pending:
                for key in (f"s:{record.span_id}", f"t:{record.trace_id}", f"r:{record.response_id}"):
                    for pid in self._pending_keys.pop(key, set()):
                        waiting = self._pending.pop(pid, None)
                        if waiting is not None:
                            self._unlink_locked(pid, waiting.item)
                            joined.append(waiting.item)
        for item in joined:
            self._record_join(record, item)

    def _forget_locked(self, record: SpanRecord) -> None:
        if self._by_trace.get(record.trace_id) == record.span_id:
            del self._by_trace[record.trace_id]
        if record.response_id and self._by_response.get(record.response_id) == record.span_id:
            del self._by_response[record.response_id]

    # -- feedback ------------------------------------------------------------------------------------

    def _find_locked(self, item: FeedbackRequest) -> SpanRecord | None:
        """The span ``item`` is about: by span id, else response id, else the trace's latest response."""
        candidates = (
            item.span_id,
            self._by_response.get(item.response_id) if item.response_id is not None else None,
            self._by_trace.get(item.trace_id) if item.trace_id is not None else None,
        )
        for span_id in candidates:
            if span_id is not None:
                record = self._spans.get(span_id)
                if record is not None:
                    return record
        return None

    @staticmethod
    def _keys(item: FeedbackRequest) -> list[str]:
        keys = []
        if item.span_id is not None:
            keys.append(f"s:{item.span_id}")
        if item.trace_id is not None:
            keys.append(f"t:{item.trace_id}")
        if item.response_id is not None:
            keys.append(f"r:{item.response_id}")
        return keys

    def _unlink_locked(self, pid: int, item: FeedbackRequest) -> None:
        for key in self._keys(item):
            ids = self._pending_keys.get(key)
            if ids is not None:
                ids.discard(pid)
                if not ids:
                    del self._pending_keys[key]

    def submit(self, item: FeedbackRequest) -> JoinOutcome:
        """Join ``item`` to its span now, or keep it pending for the join window."""
        now = self.clock()
        overflow = False
        with self._lock:
            record = self._find_locked(item)
            if record is None:
                if len(self._pending) >= self.max_pending:
                    overflow = True
                else:
                    pid = self._next_pending
                    self._next_pending += 1
                    self._pending[pid] = _Pending(item, now)
                    for key in self._keys(item):
                        self._pending_keys.setdefault(key, set()).add(pid)
        if record is not None:
            self._record_join(record, item)
            return JoinOutcome("joined")
        if overflow:
            self._record_unjoined(item, _Unjoined.OVERFLOW)
        return JoinOutcome("pending")

    def _record_join(self, record: SpanRecord, item: FeedbackRequest) -> None:
        reading = polarity(item)
        with self._lock:
            record.feedback += 1
            if reading == "positive":
                record.positive += 1
            elif reading == "negative":
                record.negative += 1
            self.joined_total += 1
        if self.store is not None:
            self.store.register_resource(record.resource, record.resource_attributes)
            counter = self.store.counter(m.OTEL_LLM_FEEDBACK, FEEDBACK_LABELS)
            counter.add((record.resource, (item.kind.value, reading, *record.dimensions)), 1.0, _now_ns())
        for listener in self.listeners:
            listener(record, item, reading)

    def _record_unjoined(self, item: FeedbackRequest, reason: str) -> None:
        with self._lock:
            self.unjoined_total += 1
        if self.store is not None:
            counter = self.store.counter(
                m.OTEL_LLM_FEEDBACK_UNJOINED,
                (attrs.OTEL_LLM_FEEDBACK_KIND, attrs.OTEL_LLM_FEEDBACK_UNJOINED_REASON),
            )
            counter.add(((), (item.kind.value, reason)), 1.0, _now_ns())

    # -- upkeep --------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Count expired pending feedback as unjoined and forget spans past retention; returns expired."""
        now = self.clock()
        expired: list[FeedbackRequest] = []
        with self._lock:
            while self._pending:
                pid, waiting = next(iter(self._pending.items()))
                if now - waiting.received < self.join_window_s:
                    break
                del self._pending[pid]
                self._unlink_locked(pid, waiting.item)
                expired.append(waiting.item)
            while self._spans:
                record = next(iter(self._spans.values()))
                if now - record.seen < self.retention_s:
                    break
                self._spans.popitem(last=False)
                self._forget_locked(record)
        for item in expired:
            self._record_unjoined(item, _Unjoined.EXPIRED)
        return len(expired)

    def rates(self) -> dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[int, int, int, int]]:
        """Per (resource, dimensions): responses, responses with feedback, positive, negative items."""
        out: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
        with self._lock:
            records = list(self._spans.values())
        for record in records:
            acc = out.setdefault((record.resource, record.dimensions), [0, 0, 0, 0])
            acc[0] += 1
            acc[1] += record.feedback > 0
            acc[2] += record.positive
            acc[3] += record.negative
        return {key: (v[0], v[1], v[2], v[3]) for key, v in out.items()}

    def export_gauges(self) -> None:
        """Set coverage and positive-rate gauges from the spans currently indexed."""
        if self.store is None:
            return
        now_ns = _now_ns()
        coverage = self.store.gauge(m.OTEL_LLM_FEEDBACK_COVERAGE, RATE_LABELS)
        rate = self.store.gauge(m.OTEL_LLM_FEEDBACK_POSITIVE, RATE_LABELS)
        resources: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
        with self._lock:
            for record in self._spans.values():
                resources.setdefault(record.resource, record.resource_attributes)
        for (resource, dims), (responses, with_feedback, positive, negative) in self.rates().items():
            self.store.register_resource(resource, resources.get(resource, ()))
            coverage.set((resource, dims), with_feedback / responses, now_ns)
            if positive + negative:
                rate.set((resource, dims), positive / (positive + negative), now_ns)

    def stats(self) -> dict[str, Any]:
        """Sizes and totals, for the extension's status reply and tests."""
        return {
            "spans": len(self._spans),
            "pending": len(self._pending),
            "joined": self.joined_total,
            "unjoined": self.unjoined_total,
        }


def _now_ns() -> int:
    return time.time_ns()
