"""``judge`` processor: LLM-as-judge on a deterministic sample of traces, within hard limits.

Configured like::

    processors:
      judge:
        endpoint: https://api.openai.com/v1     # any OpenAI-compatible chat-completions endpoint
        model: gpt-4o-mini
        api_key_env: OPENAI_API_KEY
        sample_rate: 0.05
        evaluators:
          - name: relevance
          - name: faithfulness
            sample_rate: 0.02
          - name: tone
            rubric: "Pass when the answer is polite and professional."
        budget_usd_per_hour: 1.0
        budget_usd_per_day: 10.0

How a span travels (``process`` never waits on the judge):

1. ``process`` hashes the trace id (:func:`~collector.quality.judge.sample_point`) and picks the
   evaluators whose rate (times the back-off multiplier) is above it; the others are counted in
   ``otel_llm.judge.skipped`` (``sampled_out``, or the reason of the back-off). Retrieval spans of
   sampled traces leave their document texts for step 2. Sampled spans with content wait in a bounded
   pending list; when it is full they are counted (``queue_full``).
2. A dispatcher thread moves each item to the bounded work queue once ``settle_delay`` has passed, so
   the rest of the trace (retrieval spans) has arrived; the trace's documents are added then.
3. ``concurrency`` worker threads check the spend budget (``budget_exhausted``) and the request rate
   (``rate_limited``), redact the content with the PII processor's redactor when one is registered,
   call the judge with timeouts and retries (429 and 5xx, exponential back-off with jitter, or the
   server's ``Retry-After``), price the call from the reply's token usage with the cost processor's
   price book, and record ``otel_llm.evaluation.score`` under the judged span's dimensions.

Every limit that is hit halves the sampling multiplier (every evaluator alike, so the subset property
holds); each quiet ``backoff_recovery`` doubles it back. The budget is checked before each call, so
spend can overshoot by at most the calls already in flight (``concurrency``).

The judge's own calls go through the standard library, never through ``otel_llm``'s httpx hooks,
carry the ``X-Otel-Llm-Judge`` header and the ``otel-llm-judge`` user agent; spans from services in
``skip_services`` (default ``otel-llm-judge``, for a proxy that traces them) are never judged.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, TraceBatch
from collector.durations import Duration
from collector.errors import ComponentError
from collector.genai.dimensions import Dimensions
from collector.genai.prices import PriceBook, Unpriced, load_overrides
from collector.genai.spans import GenAISpan
from collector.metrics import MetricStore, shared_store
from collector.quality import _labels as names
from collector.quality._content import RESPONSE_OPERATIONS, SpanContent, document_texts, read_content
from collector.quality.judge import (
    BUILTIN_TEMPLATES,
    Backoff,
    JudgeClient,
    JudgeError,
    JudgeReply,
    JudgeTemplate,
    MalformedVerdict,
    RequestRate,
    SpendLedger,
    build_messages,
    estimate_tokens,
    parse_verdict,
    retry_delay,
    rubric_template,
    sample_point,
)
from collector.quality.variants import VariantTracker
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

__all__ = ["FACTORY", "EvaluatorSettings", "JudgeProcessor", "JudgeProcessorConfig", "PriceSettings"]

_Skip = attrs.OtelLlmJudgeSkipReasonValues
#: ``error.type`` of a judge call whose reply held no usable verdict.
MALFORMED_VERDICT = "malformed_verdict"
_RETRIEVAL = attrs.GenAiOperationNameValues.RETRIEVAL


class EvaluatorSettings(ComponentConfig):
    """One judge evaluator: a built-in template, or a custom rubric."""

    name: str = Field(
        description="Evaluation name (`gen_ai.evaluation.name`); a built-in name selects its template."
    )
    rubric: str = Field("", description="Custom rubric text; required for names that are not built in.")
    labels: dict[str, float] | None = Field(
        None, description="Custom labels and the score each implies (rubrics); default pass=1, fail=0."
    )
    needs_context: bool = Field(False, description="Rubric needs retrieved context (skip spans without it).")
    sample_rate: float | None = Field(
        None, ge=0, le=1, description="Share of traces judged; default: the processor's `sample_rate`."
    )

    def problems(self) -> list[tuple[str, str]]:
        if not self.rubric and self.name not in BUILTIN_TEMPLATES:
            return [
                ("rubric", f"{self.name!r} is not built in ({', '.join(BUILTIN_TEMPLATES)}): give a rubric")
            ]
        if self.labels is not None and any(not 0 <= v <= 1 for v in self.labels.values()):
            return [("labels", "label scores must be between 0 and 1")]
        return []

    def template(self) -> JudgeTemplate:
        if self.rubric:
            return rubric_template(self.name, self.rubric, self.labels, self.needs_context)
        return BUILTIN_TEMPLATES[self.name]


class PriceSettings(ComponentConfig):
    """Explicit judge-model prices, for a model the price book does not know."""

    input_usd_per_mtok: float = Field(ge=0, description="USD per million input tokens.")
    output_usd_per_mtok: float = Field(ge=0, description="USD per million output tokens.")


def _default_evaluators() -> list[EvaluatorSettings]:
    return [EvaluatorSettings(name=name) for name in BUILTIN_TEMPLATES]


class JudgeProcessorConfig(ComponentConfig):
    """``judge`` processor settings."""

    endpoint: str = Field(
        "https://api.openai.com/v1",
        description="OpenAI-compatible base URL (`/chat/completions` is appended) or full chat URL.",
    )
    model: str = Field("gpt-4o-mini", description="Judge model.")
    provider: str = Field("openai", description="`gen_ai.provider.name` of the judge, for pricing.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key; unset or empty: no key."
    )
    evaluators: list[EvaluatorSettings] = Field(
        default_factory=_default_evaluators,
        description="Evaluators; default relevance, faithfulness, toxicity.",
    )
    sample_rate: float = Field(0.05, ge=0, le=1, description="Default share of traces each evaluator judges.")
    settle_delay: Duration = Field(
        30.0, description="Wait after a span arrives so the rest of its trace arrives."
    )
    max_pending: int = Field(1000, gt=0, description="Spans waiting out the settle delay; more are dropped.")
    queue_size: int = Field(100, gt=0, description="Spans ready for the workers; more are dropped.")
    concurrency: int = Field(2, gt=0, le=64, description="Judge calls in flight (worker threads).")
    requests_per_minute: int = Field(60, ge=0, description="Judge calls per sliding minute; 0: no limit.")
    budget_usd_per_hour: float = Field(1.0, ge=0, description="Judge spend per sliding hour, USD.")
    budget_usd_per_day: float = Field(10.0, ge=0, description="Judge spend per sliding day, USD.")
    price: PriceSettings | None = Field(
        None, description="Judge prices; default: the cost processor's price book (genai-prices, overrides)."
    )
    price_overrides: str | None = Field(
        None,
        description="Price override file for the price book, as the `cost` processor's `price_overrides`.",
    )
    timeout: Duration = Field(30.0, description="Timeout of one judge request.")
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries after 429, 5xx, timeouts and connection errors."
    )
    retry_backoff: Duration = Field(1.0, description="First retry delay, doubled per retry, with jitter.")
    max_retry_backoff: Duration = Field(30.0, description="Longest retry delay (also caps Retry-After).")
    backoff_recovery: Duration = Field(
        60.0, description="Quiet time after which a halved sampling multiplier doubles back."
    )
    skip_services: list[str] = Field(
        default_factory=lambda: ["otel-llm-judge"],
        description="`service.name`s whose spans are never judged.",
    )
    max_content_chars: int = Field(8000, gt=0, description="Each text sent to the judge is clipped to this.")
    json_mode: bool = Field(True, description="Ask for `response_format: json_object`.")
    temperature: float = Field(0.0, ge=0, le=2, description="Judge sampling temperature.")
    max_tokens: int = Field(300, gt=0, description="Most tokens the judge may answer.")
    cardinality_limit: int = Field(2000, gt=0, description="Series per metric before overflow.")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self.endpoint.startswith(("http://", "https://")):
            out.append(("endpoint", f"expected an http:// or https:// URL, got {self.endpoint!r}"))
        if not self.evaluators:
            out.append(("evaluators", "give at least one evaluator"))
        seen: set[str] = set()
        for index, evaluator in enumerate(self.evaluators):
            out.extend((f"evaluators::{index}::{key}", message) for key, message in evaluator.problems())
            if evaluator.name in seen:
                out.append((f"evaluators::{index}::name", f"duplicate evaluator {evaluator.name!r}"))
            seen.add(evaluator.name)
        if self.timeout <= 0:
            out.append(("timeout", "expected a duration above zero"))
        return out


@dataclass(frozen=True, slots=True)
class _Evaluator:
    name: str
    rate: float
    template: JudgeTemplate


@dataclass(slots=True)
class _Item:
    trace_id: bytes
    due: float
    evaluators: list[_Evaluator]
    content: SpanContent
    resource: tuple[str, ...]
    resource_attributes: tuple[tuple[str, str], ...]
    dimensions: tuple[str, ...]
    variant_values: list[tuple[VariantTracker, str]] = field(default_factory=list)


class _TraceDocs:
    """Document texts of sampled traces, kept until their spans are dispatched; bounded."""

    def __init__(self, max_traces: int) -> None:
        self.max_traces = max_traces
        self._docs: dict[bytes, list[str]] = {}
        self._lock = threading.Lock()

    def add(self, trace_id: bytes, texts: list[str]) -> None:
        with self._lock:
            if trace_id not in self._docs and len(self._docs) >= self.max_traces:
                self._docs.pop(next(iter(self._docs)))
            self._docs.setdefault(trace_id, []).extend(texts)

    def take(self, trace_id: bytes) -> list[str]:
        with self._lock:
            return list(self._docs.get(trace_id, ()))

    def drop(self, trace_id: bytes) -> None:
        with self._lock:
            self._docs.pop(trace_id, None)


class JudgeProcessor:
    """Samples spans, settles, and evaluates them with an LLM judge on worker threads.

    ``process`` is thread-safe and O(spans) with no I/O. ``clock`` (monotonic seconds) can be replaced
    before ``start`` by tests to move the budget windows.
    """

    def __init__(self, config: JudgeProcessorConfig, settings: CreateSettings) -> None:
        self.config = config
        self.logger = settings.logger
        self.evaluators = [
            _Evaluator(e.name, config.sample_rate if e.sample_rate is None else e.sample_rate, e.template())
            for e in config.evaluators
        ]
        self.max_rate = max((e.rate for e in self.evaluators), default=0.0)
        self.clock: Callable[[], float] = time.monotonic
        self.backoff = Backoff(recovery_s=config.backoff_recovery)
        self.ledger = SpendLedger()
        self.rate = RequestRate(config.requests_per_minute)
        self.store: MetricStore | None = None
        self.client: JudgeClient | None = None
        self.prices: PriceBook | None = None
        self._host: Host | None = None
        self._trackers: list[VariantTracker] = []
        self._tracker_readers: dict[str, Dimensions] = {}
        self._docs = _TraceDocs(config.max_pending)
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pending: deque[_Item] = deque()
        self._queue: queue.Queue[_Item] = queue.Queue(config.queue_size)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._skip_services = frozenset(config.skip_services)

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        """Check the judge can be priced, build the client and start the dispatcher and workers."""
        if self._threads:
            return
        self._host = host
        self.store = shared_store(host)
        self._trackers = host.get_shared(names.VARIANTS_KEY, list)
        if self.config.price is None:
            try:
                overrides = (
                    load_overrides(self.config.price_overrides) if self.config.price_overrides else None
                )
            except ValueError as exc:
                raise ComponentError(f"judge: price_overrides: {exc}") from exc
            self.prices = PriceBook(overrides)
            try:
                self.prices.cost(self.config.provider, self.config.model, time.time_ns(), 1000, 100)
            except Unpriced as exc:
                raise ComponentError(
                    f"judge: cannot price model {self.config.model!r} of provider {self.config.provider!r} "
                    f"({exc.reason}); set price: {{input_usd_per_mtok: ..., output_usd_per_mtok: ...}}"
                ) from exc
        api_key = os.environ.get(self.config.api_key_env, "") if self.config.api_key_env else ""
        self.client = JudgeClient(
            self.config.endpoint,
            self.config.model,
            api_key=api_key or None,
            timeout_s=self.config.timeout,
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            json_mode=self.config.json_mode,
        )
        self._stop.clear()
        self._threads = [threading.Thread(target=self._dispatch_loop, name="judge-dispatch", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work_loop, name=f"judge-worker-{i}", daemon=True)
            for i in range(self.config.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def shutdown(self, timeout_s: float) -> None:
        """Stop the threads (in-flight calls end by their timeout); drops waiting spans, counted."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
            dropped = list(self._pending)
            self._pending.clear()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        while True:
            try:
                dropped.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if dropped:
            self._skip_items(dropped, _Skip.SHUTDOWN)

    # -- metrics helpers -----------------------------------------------------------------------------

    def _count_skips(self, tally: Tally[tuple[str, str]]) -> None:
        if self.store is None or not tally:
            return
        counter = self.store.counter(
            m.OTEL_LLM_JUDGE_SKIPPED,
            (attrs.GEN_AI_EVALUATION_NAME, attrs.OTEL_LLM_JUDGE_SKIP_REASON),
            cardinality_limit=self.config.cardinality_limit,
        )
        counter.add_many([(((), key), float(n)) for key, n in tally.items()], time.time_ns())

    def _skip_items(self, items: list[_Item], reason: str, only: str | None = None) -> None:
        tally: Tally[tuple[str, str]] = Tally()
        for item in items:
            for evaluator in item.evaluators:
                if only is None or evaluator.name == only:
                    tally[(evaluator.name, reason)] += 1
        self._count_skips(tally)

    def _count_call(self, evaluator: str, error_type: str) -> None:
        if self.store is None:
            return
        self.store.counter(
            m.OTEL_LLM_JUDGE_CALLS,
            (
                attrs.GEN_AI_EVALUATION_NAME,
                attrs.GEN_AI_PROVIDER_NAME,
                attrs.GEN_AI_REQUEST_MODEL,
                attrs.ERROR_TYPE,
            ),
        ).add(((), (evaluator, self.config.provider, self.config.model, error_type)), 1.0, time.time_ns())

    # -- hot path ------------------------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch | None:
        """Pick sampled spans and queue them for judgement; returns the batch unchanged, at once."""
        if not isinstance(batch, TraceBatch):
            return batch
        spans = batch.genai_spans()
        if not spans or not self._threads:
            return batch
        now = self.clock()
        multiplier = self.backoff.current(now)
        backoff_reason = self.backoff.reason or _Skip.RATE_LIMITED
        tally: Tally[tuple[str, str]] = Tally()
        items: list[_Item] = []
        exhausted = self._budget_exhausted(now)
        for span in spans:
            if span.service_name in self._skip_services:
                continue
            trace_id = span.span.trace_id
            point = sample_point(trace_id)
            if span.operation == _RETRIEVAL:
                if point < self.max_rate * multiplier:
                    texts = document_texts(span)
                    if texts:
                        self._docs.add(trace_id, texts)
                continue
            if span.operation not in RESPONSE_OPERATIONS:
                continue
            selected: list[_Evaluator] = []
            for evaluator in self.evaluators:
                if point >= evaluator.rate:
                    tally[(evaluator.name, _Skip.SAMPLED_OUT)] += 1
                elif point >= evaluator.rate * multiplier:
                    tally[(evaluator.name, backoff_reason)] += 1
                elif exhausted:
                    tally[(evaluator.name, _Skip.BUDGET_EXHAUSTED)] += 1
                else:
                    selected.append(evaluator)
            if not selected:
                continue
            content = read_content(span)
            if not content.has_content:
                for evaluator in selected:
                    tally[(evaluator.name, _Skip.NO_CONTENT)] += 1
                continue
            resource, resource_attributes = names.span_resource(span)
            items.append(
                _Item(
                    trace_id,
                    now + self.config.settle_delay,
                    selected,
                    content,
                    resource,
                    resource_attributes,
                    names.span_dimensions(span),
                    self._variant_values(span),
                )
            )
        if exhausted and any(reason == _Skip.BUDGET_EXHAUSTED for _, reason in tally):
            self.backoff.hit(_Skip.BUDGET_EXHAUSTED, now)
        if items:
            overflow: list[_Item] = []
            with self._ready:
                for item in items:
                    if len(self._pending) >= self.config.max_pending:
                        overflow.append(item)
                    else:
                        self._pending.append(item)
                self._ready.notify()
            if overflow:
                for item in overflow:
                    for evaluator in item.evaluators:
                        tally[(evaluator.name, _Skip.QUEUE_FULL)] += 1
                self.backoff.hit(_Skip.QUEUE_FULL, now)
        self._count_skips(tally)
        return batch

    def _variant_values(self, span: GenAISpan) -> list[tuple[VariantTracker, str]]:
        out: list[tuple[VariantTracker, str]] = []
        for tracker in self._trackers:
            reader = self._tracker_readers.get(tracker.dimension)
            if reader is None:
                reader = self._tracker_readers[tracker.dimension] = Dimensions([tracker.dimension])
            value = reader.values(span)[0]
            if value in (tracker.a, tracker.b):
                out.append((tracker, value))
        return out

    def _budget_exhausted(self, now: float) -> bool:
        return (
            self.ledger.spent(now, 3600.0) >= self.config.budget_usd_per_hour
            or self.ledger.spent(now, 86_400.0) >= self.config.budget_usd_per_day
        )

    # -- threads -------------------------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            with self._ready:
                while not self._stop.is_set():
                    now = self.clock()
                    if self._pending and self._pending[0].due <= now:
                        item = self._pending.popleft()
                        break
                    wait = self._pending[0].due - now if self._pending else 1.0
                    self._ready.wait(min(max(wait, 0.001), 1.0))
                else:
                    return
            item.content.context.extend(self._docs.take(item.trace_id))
            self._docs.drop(item.trace_id)
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._skip_items([item], _Skip.QUEUE_FULL)
                self.backoff.hit(_Skip.QUEUE_FULL, self.clock())

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._judge(item)
            except Exception:  # a bug in one judgement must not stop the worker; logged, item counted
                self.logger.log(logging.WARNING, "judge worker failed on an item", exc_info=True)
                self._skip_items([item], _Skip.SHUTDOWN if self._stop.is_set() else _Skip.ERROR)

    def _redactor(self) -> Callable[[str], str] | None:
        found = self._host.shared.get(names.REDACTOR_KEY) if self._host is not None else None
        return found if callable(found) else None

    def _judge(self, item: _Item) -> None:
        for evaluator in item.evaluators:
            if self._stop.is_set():
                self._skip_items([item], _Skip.SHUTDOWN, only=evaluator.name)
                continue
            template = evaluator.template
            if template.needs_context and not item.content.context:
                self._skip_items([item], _Skip.NO_CONTENT, only=evaluator.name)
                continue
            now = self.clock()
            if self._budget_exhausted(now):
                self.backoff.hit(_Skip.BUDGET_EXHAUSTED, now)
                self._skip_items([item], _Skip.BUDGET_EXHAUSTED, only=evaluator.name)
                continue
            if not self.rate.try_take(now):
                self.backoff.hit(_Skip.RATE_LIMITED, now)
                self._skip_items([item], _Skip.RATE_LIMITED, only=evaluator.name)
                continue
            try:
                messages = build_messages(
                    template, item.content, max_chars=self.config.max_content_chars, redact=self._redactor()
                )
            except Exception:  # never send content the redactor could not clean
                self._skip_items([item], _Skip.REDACTION_FAILED, only=evaluator.name)
                continue
            reply = self._call(evaluator.name, messages)
            if reply is None:
                continue
            cost = self._price(reply, messages)
            self.ledger.add(cost, self.clock())
            if self.store is not None:
                self.store.counter(
                    m.OTEL_LLM_JUDGE_COST,
                    (attrs.GEN_AI_EVALUATION_NAME, attrs.GEN_AI_PROVIDER_NAME, attrs.GEN_AI_REQUEST_MODEL),
                ).add(((), (evaluator.name, self.config.provider, self.config.model)), cost, time.time_ns())
            try:
                verdict = parse_verdict(reply.text, template.labels)
            except MalformedVerdict:
                self._count_call(evaluator.name, MALFORMED_VERDICT)
                continue
            self._count_call(evaluator.name, "")
            if self.store is not None:
                self.store.register_resource(item.resource, item.resource_attributes)
                self.store.histogram(
                    m.OTEL_LLM_EVALUATION_SCORE,
                    names.EVALUATION_LABELS,
                    cardinality_limit=self.config.cardinality_limit,
                ).record(
                    (item.resource, (evaluator.name, verdict.label, *item.dimensions)),
                    verdict.score,
                    time.time_ns(),
                )
            for tracker, value in item.variant_values:
                tracker.observe_score(value, evaluator.name, verdict.score, self.clock())

    def _call(self, evaluator: str, messages: list[dict[str, str]]) -> JudgeReply | None:
        assert self.client is not None
        attempt = 0
        while True:
            try:
                return self.client.call(messages)
            except JudgeError as error:
                self._count_call(evaluator, error.kind)
                if error.kind == "429":
                    self.backoff.hit(_Skip.RATE_LIMITED, self.clock())
                attempt += 1
                if not error.retryable or attempt > self.config.max_retries or self._stop.is_set():
                    if error.kind == "429":
                        tally: Tally[tuple[str, str]] = Tally({(evaluator, _Skip.RATE_LIMITED): 1})
                        self._count_skips(tally)
                    return None
                delay = retry_delay(
                    attempt,
                    self.config.retry_backoff,
                    self.config.max_retry_backoff,
                    error.retry_after_s,
                    random.random(),
                )
                if self._stop.wait(delay):
                    return None

    def _price(self, reply: JudgeReply, messages: list[dict[str, str]]) -> float:
        input_tokens = reply.input_tokens if reply.input_tokens is not None else estimate_tokens(messages)
        # No usage in the reply: assume the whole answer allowance was used, so the budget errs on the safe side.
        output_tokens = reply.output_tokens if reply.output_tokens is not None else self.config.max_tokens
        if self.config.price is not None:
            return (
                input_tokens * self.config.price.input_usd_per_mtok
                + output_tokens * self.config.price.output_usd_per_mtok
            ) / 1e6
        assert self.prices is not None
        try:
            return self.prices.cost(
                self.config.provider, self.config.model, time.time_ns(), input_tokens, output_tokens
            )
        except Unpriced:
            # The model was priced at start; a reply naming another model is priced as the configured one.
            return 0.0

    # -- introspection (tests) ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Spans waiting out the settle delay."""
        return len(self._pending)


def _create(config: JudgeProcessorConfig, settings: CreateSettings) -> JudgeProcessor:
    return JudgeProcessor(config, settings)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="judge",
    config_type=JudgeProcessorConfig,
    create=_create,
    signals=frozenset({Signal.TRACES}),
    description="LLM-as-judge on a deterministic sample of GenAI traces, with rate and spend limits.",
)
