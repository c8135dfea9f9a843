"""``quality`` processor: heuristic evaluators on every GenAI span with content, scores as metrics.

Configured like::

    processors:
      quality:
        evaluators: [completeness, refusal, json_validity, answer_length, context_overlap]
        annotate: event            # none | event | attributes
        variants:
          - dimension: gen_ai.prompt.version
            a: v1
            b: v2
            window: 1h

For each GenAI response span it reads the captured content (see :mod:`collector.quality._content`),
runs the evaluators of :mod:`collector.quality.heuristics` and records ``otel_llm.evaluation.score``
per evaluator, label, operation, provider, request model and prompt version (service and the other
resource keys are the series' resource). Spans that carry no content are counted in
``otel_llm.evaluation.spans_without_content``, because content capture is opt-in and a score computed
over the few spans that have it must be read with that share in mind.

Scores of ``gen_ai.evaluation.result`` events the application already put on its spans are recorded
too (``record_evaluation_events``; turn it off behind another collector that annotates with events,
or they count twice).

``annotate: event`` adds one ``gen_ai.evaluation.result`` event per evaluation to the forwarded span;
``annotate: attributes`` sets the ``gen_ai.evaluation.*`` attributes of the lowest-scoring evaluation
(one set of attributes cannot hold several results; events can). Existing values are never replaced.
The batch's cached GenAI view is kept (not invalidated), so later processors keep what earlier ones set.

The processor also feeds the ``feedback`` extension's index (when that extension runs) and the
variant trackers, whose comparisons it exports every ``variant_interval`` as
``otel_llm.variant.*`` gauges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Literal

from opentelemetry.proto.trace.v1.trace_pb2 import Span
from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, TraceBatch
from collector.durations import Duration
from collector.genai.dimensions import Dimensions
from collector.genai.spans import GenAISpan
from collector.metrics import MetricStore, shared_store
from collector.quality import _labels as names
from collector.quality._content import RESPONSE_OPERATIONS, document_texts, read_content
from collector.quality._feedback import FeedbackIndex, FeedbackRequest, Polarity, SpanRecord
from collector.quality.heuristics import (
    DEFAULT_REFUSAL_PHRASES,
    HEURISTIC_EVALUATORS,
    Evaluation,
    HeuristicSettings,
    evaluate,
)
from collector.quality.variants import VariantTracker
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import events as ev
from otel_llm.conventions import metrics as m

__all__ = [
    "FACTORY",
    "RESPONSE_OPERATIONS",
    "QualityProcessor",
    "QualityProcessorConfig",
    "VariantSettings",
    "export_variants",
]

_RETRIEVAL = attrs.GenAiOperationNameValues.RETRIEVAL
_Side = attrs.OtelLlmVariantSideValues


class VariantSettings(ComponentConfig):
    """One variant comparison: two values of one dimension."""

    name: str = Field("", description="Name in the metrics (`otel_llm.variant.name`); default `<a>_vs_<b>`.")
    dimension: str = Field(
        attrs.GEN_AI_PROMPT_VERSION,
        description="Span or resource attribute whose values are compared, e.g. `gen_ai.request.model`.",
    )
    a: str = Field(description="Baseline value.")
    b: str = Field(description="Candidate value; differences are B minus A.")
    window: Duration = Field(3600.0, description="Compare observations of the last window.")
    score_evaluator: str = Field(
        "", description="Evaluation name whose scores are compared; empty: every evaluation score."
    )
    max_samples: int = Field(10_000, gt=0, description="Observations kept per variant and quantity.")

    def problems(self) -> list[tuple[str, str]]:
        if self.a == self.b:
            return [("b", f"expected a value different from a, got {self.b!r} twice")]
        return []


class QualityProcessorConfig(ComponentConfig):
    """``quality`` processor settings."""

    evaluators: list[str] = Field(
        default_factory=lambda: list(HEURISTIC_EVALUATORS),
        description="Heuristic evaluators to run: " + ", ".join(HEURISTIC_EVALUATORS) + ".",
    )
    refusal_phrases: list[str] | None = Field(
        None, description="Refusal phrases (case-insensitive); default: a built-in English list."
    )
    min_answer_chars: int = Field(1, ge=0, description="`answer_length`: shorter answers score 0.")
    max_answer_chars: int = Field(20_000, gt=0, description="`answer_length`: longer answers score 0.")
    overlap_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="`context_overlap`: share of answer words in context to count as grounded.",
    )
    annotate: Literal["none", "event", "attributes"] = Field(
        "none",
        description="Add results to the forwarded span: `gen_ai.evaluation.result` events or attributes.",
    )
    context_traces: int = Field(
        10_000, ge=0, description="Traces whose retrieved documents are remembered for later spans."
    )
    record_evaluation_events: bool = Field(
        True,
        description="Also record scores of `gen_ai.evaluation.result` events the application put on its spans.",
    )
    skip_services: list[str] = Field(
        default_factory=lambda: ["otel-llm-judge"],
        description="`service.name`s whose spans are not evaluated (the judge's own calls, when traced).",
    )
    feedback_index: bool = Field(
        True, description="Add response spans to the `feedback` extension's join index when it runs."
    )
    variants: list[VariantSettings] = Field(default_factory=list, description="Variant comparisons.")
    variant_interval: Duration = Field(30.0, description="How often variant comparisons are computed.")
    cardinality_limit: int = Field(2000, gt=0, description="Series per metric before overflow.")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for index, name in enumerate(self.evaluators):
            if name not in HEURISTIC_EVALUATORS:
                out.append(
                    (
                        f"evaluators::{index}",
                        f"expected one of {', '.join(HEURISTIC_EVALUATORS)}, got {name!r}",
                    )
                )
        if self.min_answer_chars > self.max_answer_chars:
            out.append(("min_answer_chars", "must not exceed max_answer_chars"))
        if self.variants and self.variant_interval <= 0:
            out.append(("variant_interval", "expected a duration above zero"))
        seen: set[str] = set()
        for index, variant in enumerate(self.variants):
            for key, message in variant.problems():
                out.append((f"variants::{index}::{key}", message))
            name = variant.name or f"{variant.a}_vs_{variant.b}"
            if name in seen:
                out.append((f"variants::{index}::name", f"duplicate variant name {name!r}"))
            seen.add(name)
        return out


class _TraceContext:
    """Retrieved document texts of recent traces, bounded in traces and characters per trace."""

    _MAX_CHARS = 50_000

    def __init__(self, max_traces: int) -> None:
        self.max_traces = max_traces
        self._docs: OrderedDict[bytes, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, trace_id: bytes, texts: list[str]) -> None:
        if not self.max_traces:
            return
        with self._lock:
            docs = self._docs.setdefault(trace_id, [])
            self._docs.move_to_end(trace_id)
            size = sum(len(t) for t in docs)
            for text in texts:
                if size + len(text) > self._MAX_CHARS:
                    break
                docs.append(text)
                size += len(text)
            while len(self._docs) > self.max_traces:
                self._docs.popitem(last=False)

    def get(self, trace_id: bytes) -> list[str]:
        with self._lock:
            return list(self._docs.get(trace_id, ()))


def _set_attribute(span: GenAISpan, key: str, value: str | float) -> None:
    kv = span.span.attributes.add()
    kv.key = key
    if isinstance(value, str):
        kv.value.string_value = value
    else:
        kv.value.double_value = value
    # Keep the batch's cached GenAI view in step rather than invalidating it: an invalidated view
    # would be rebuilt without what earlier processors decided (cost, duplicate-call flags).
    span.attributes[key] = kv.value


def _annotate_events(span: Span, evaluations: list[Evaluation], response_id: str, time_ns: int) -> None:
    for evaluation in evaluations:
        event = span.events.add()
        event.name = ev.GEN_AI_EVALUATION_RESULT
        event.time_unix_nano = span.end_time_unix_nano or time_ns
        for key, value in (
            (attrs.GEN_AI_EVALUATION_NAME, evaluation.name),
            (attrs.GEN_AI_EVALUATION_SCORE_VALUE, evaluation.score),
            (attrs.GEN_AI_EVALUATION_SCORE_LABEL, evaluation.label),
            (attrs.GEN_AI_EVALUATION_EXPLANATION, evaluation.explanation),
            (attrs.GEN_AI_RESPONSE_ID, response_id),
        ):
            if value == "":
                continue
            kv = event.attributes.add()
            kv.key = key
            if isinstance(value, str):
                kv.value.string_value = value
            else:
                kv.value.double_value = value


def _evaluation_events(span: Span) -> list[Evaluation]:
    """Scored ``gen_ai.evaluation.result`` events already on the span (name and a 0..1 score required)."""
    out: list[Evaluation] = []
    for event in span.events:
        if event.name != ev.GEN_AI_EVALUATION_RESULT:
            continue
        name = label = ""
        score: float | None = None
        for kv in event.attributes:
            if kv.key == attrs.GEN_AI_EVALUATION_NAME:
                name = kv.value.string_value
            elif kv.key == attrs.GEN_AI_EVALUATION_SCORE_LABEL:
                label = kv.value.string_value
            elif kv.key == attrs.GEN_AI_EVALUATION_SCORE_VALUE:
                kind = kv.value.WhichOneof("value")
                if kind == "double_value":
                    score = kv.value.double_value
                elif kind == "int_value":
                    score = float(kv.value.int_value)
        if name and score is not None and 0.0 <= score <= 1.0:
            out.append(Evaluation(name, score, label))
    return out


def _annotate_attributes(span: GenAISpan, evaluations: list[Evaluation]) -> None:
    if attrs.GEN_AI_EVALUATION_NAME in span.attributes:
        return
    worst = min(evaluations, key=lambda e: e.score)
    _set_attribute(span, attrs.GEN_AI_EVALUATION_NAME, worst.name)
    _set_attribute(span, attrs.GEN_AI_EVALUATION_SCORE_VALUE, worst.score)
    _set_attribute(span, attrs.GEN_AI_EVALUATION_SCORE_LABEL, worst.label)
    if worst.explanation:
        _set_attribute(span, attrs.GEN_AI_EVALUATION_EXPLANATION, worst.explanation)


def export_variants(store: MetricStore, trackers: list[VariantTracker], now: float) -> None:
    """Compute every tracker's comparisons and set the ``otel_llm.variant.*`` gauges (NaN left out)."""
    labels = (
        attrs.OTEL_LLM_VARIANT_NAME,
        attrs.OTEL_LLM_VARIANT_DIMENSION,
        attrs.OTEL_LLM_VARIANT_A,
        attrs.OTEL_LLM_VARIANT_B,
        attrs.OTEL_LLM_VARIANT_METRIC,
        attrs.OTEL_LLM_VARIANT_TEST,
    )
    gauges = {
        "difference": store.gauge(m.OTEL_LLM_VARIANT_DIFFERENCE, labels),
        "ci_low": store.gauge(m.OTEL_LLM_VARIANT_CI_LOWER, labels),
        "ci_high": store.gauge(m.OTEL_LLM_VARIANT_CI_UPPER, labels),
        "p_value": store.gauge(m.OTEL_LLM_VARIANT_P_VALUE, labels),
    }
    samples = store.gauge(m.OTEL_LLM_VARIANT_SAMPLES, (*labels, attrs.OTEL_LLM_VARIANT_SIDE))
    now_ns = time.time_ns()
    for tracker in trackers:
        for comparison in tracker.compare(now):
            key = (tracker.name, tracker.dimension, tracker.a, tracker.b, comparison.metric, comparison.test)
            samples.set(((), (*key, _Side.A)), comparison.n_a, now_ns)
            samples.set(((), (*key, _Side.B)), comparison.n_b, now_ns)
            for field_name, gauge in gauges.items():
                value = getattr(comparison, field_name)
                if value == value:  # NaN: not enough data yet
                    gauge.set(((), key), float(value), now_ns)


class QualityProcessor:
    """Runs heuristic evaluators per span; records scores; feeds the feedback index and variant trackers.

    ``process`` is called from receiver threads concurrently; the metric store, the context cache and
    the trackers are thread-safe. ``start``/``shutdown`` follow the component lifecycle.
    """

    def __init__(self, config: QualityProcessorConfig, settings: CreateSettings) -> None:
        self.config = config
        self.logger = settings.logger
        self.settings = HeuristicSettings(
            refusal_phrases=tuple(p.lower() for p in config.refusal_phrases)
            if config.refusal_phrases is not None
            else DEFAULT_REFUSAL_PHRASES,
            min_chars=config.min_answer_chars,
            max_chars=config.max_answer_chars,
            overlap_threshold=config.overlap_threshold,
        )
        self.evaluators = tuple(config.evaluators)
        self.trackers = [
            VariantTracker(
                v.name or f"{v.a}_vs_{v.b}",
                v.dimension,
                v.a,
                v.b,
                window_s=v.window,
                score_evaluator=v.score_evaluator,
                max_samples=v.max_samples,
            )
            for v in config.variants
        ]
        self._variant_readers = [Dimensions([t.dimension]) for t in self.trackers]
        self._context = _TraceContext(config.context_traces)
        self._skip_services = frozenset(config.skip_services)
        self.store: MetricStore | None = None
        self.index: FeedbackIndex | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shared_trackers: list[VariantTracker] = []

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        """Bind the metric store, the feedback index (if the extension runs) and start variant export."""
        self.store = shared_store(host)
        if self.config.feedback_index:
            found = host.shared.get(names.FEEDBACK_INDEX_KEY)
            if isinstance(found, FeedbackIndex):
                self.index = found
                if self.trackers:
                    found.listeners.append(self._on_feedback)
        if self.trackers:
            shared: list[VariantTracker] = host.get_shared(names.VARIANTS_KEY, list)
            shared.extend(t for t in self.trackers if t not in shared)
            self._shared_trackers = shared
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._export_loop, name="quality-variants", daemon=True
                )
                self._thread.start()

    def shutdown(self, timeout_s: float) -> None:
        """Stop the variant thread; safe before start and twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        if self.index is not None and self._on_feedback in self.index.listeners:
            self.index.listeners.remove(self._on_feedback)
        for tracker in self.trackers:
            if tracker in self._shared_trackers:
                self._shared_trackers.remove(tracker)

    def _export_loop(self) -> None:
        while not self._stop.wait(self.config.variant_interval):
            self.export_variants()

    def export_variants(self) -> None:
        """Compute and export variant comparisons now (the thread calls this every interval)."""
        if self.store is None:
            return
        try:
            export_variants(self.store, self.trackers, time.monotonic())
        except Exception:  # a statistics failure must not kill the thread; logged, retried next interval
            self.logger.log(logging.WARNING, "variant comparison failed", exc_info=True)

    def _on_feedback(self, record: SpanRecord, item: FeedbackRequest, reading: Polarity) -> None:
        if reading == "neutral" or not record.variants:
            return
        now = time.monotonic()
        values = dict(record.variants)
        for tracker in self.trackers:
            value = values.get(tracker.dimension)
            if value is not None:
                tracker.observe_feedback(value, reading == "positive", now)

    # -- hot path ------------------------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch | None:
        """Evaluate the batch's GenAI spans and record scores; the batch goes on (annotated on request)."""
        if not isinstance(batch, TraceBatch):
            return batch
        spans = batch.genai_spans()
        if not spans:
            return batch
        store = self.store
        for span in spans:
            if span.operation == _RETRIEVAL:
                texts = document_texts(span)
                if texts:
                    self._context.add(span.span.trace_id, texts)
        now = time.monotonic()
        now_ns = time.time_ns()
        scores: list[tuple[tuple[tuple[str, ...], tuple[object, ...]], float]] = []
        without_content: list[tuple[tuple[tuple[str, ...], tuple[object, ...]], float]] = []
        for span in spans:
            if span.operation not in RESPONSE_OPERATIONS or span.service_name in self._skip_services:
                continue
            resource, resource_attributes = names.span_resource(span)
            dims = names.span_dimensions(span)
            if store is not None:
                store.register_resource(resource, resource_attributes)
            content = read_content(span, self._context.get(span.span.trace_id))
            variant_values = self._variant_values(span)
            evaluations: list[Evaluation] = []
            if self.config.record_evaluation_events and span.span.events:
                for evaluation in _evaluation_events(span.span):
                    scores.append(((resource, (evaluation.name, evaluation.label, *dims)), evaluation.score))
            if content.has_content:
                evaluations = evaluate(content, self.settings, self.evaluators)
                for evaluation in evaluations:
                    scores.append(((resource, (evaluation.name, evaluation.label, *dims)), evaluation.score))
            else:
                without_content.append(((resource, ("", dims[1], dims[2])), 1.0))
            cost = span.cost_usd
            if cost is None and span.cost_amount is not None and span.cost_currency in ("", "USD"):
                cost = span.cost_amount  # no cost processor before us: the span's own USD cost
            for tracker, value in variant_values:
                tracker.observe_span(value, now, span.duration_s, cost)
                for evaluation in evaluations:
                    tracker.observe_score(value, evaluation.name, evaluation.score, now)
            if evaluations and self.config.annotate != "none":
                if self.config.annotate == "event":
                    _annotate_events(span.span, evaluations, span.response_id, now_ns)
                else:
                    _annotate_attributes(span, evaluations)
            if self.index is not None:
                self.index.add_span(
                    SpanRecord(
                        trace_id=span.span.trace_id.hex(),
                        span_id=span.span.span_id.hex(),
                        response_id=span.response_id,
                        resource=resource,
                        resource_attributes=resource_attributes,
                        dimensions=dims,
                        variants=tuple((t.dimension, v) for t, v in variant_values),
                    )
                )
        if store is not None:
            if scores:
                store.histogram(
                    m.OTEL_LLM_EVALUATION_SCORE,
                    names.EVALUATION_LABELS,
                    cardinality_limit=self.config.cardinality_limit,
                ).record_many(scores, now_ns)
            if without_content:
                store.counter(
                    m.OTEL_LLM_EVALUATION_SPANS_WITHOUT_CONTENT,
                    (attrs.GEN_AI_EVALUATION_NAME, attrs.GEN_AI_PROVIDER_NAME, attrs.GEN_AI_REQUEST_MODEL),
                    cardinality_limit=self.config.cardinality_limit,
                ).add_many(without_content, now_ns)
        return batch

    def _variant_values(self, span: GenAISpan) -> list[tuple[VariantTracker, str]]:
        out = []
        for tracker, reader in zip(self.trackers, self._variant_readers, strict=True):
            value = reader.values(span)[0]
            if value in (tracker.a, tracker.b):
                out.append((tracker, value))
        return out


def _create(config: QualityProcessorConfig, settings: CreateSettings) -> QualityProcessor:
    return QualityProcessor(config, settings)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="quality",
    config_type=QualityProcessorConfig,
    create=_create,
    signals=frozenset({Signal.TRACES}),
    description="Heuristic quality evaluators on GenAI spans with content; scores as metrics.",
)
