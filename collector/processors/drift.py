"""The ``drift`` processor: detects shifts of prompts and of request statistics against a reference.

It passes every batch through unchanged. Per group (default ``service.name`` and
``gen_ai.request.model``) and signal it keeps a reference and current windows
(:mod:`collector.drift.monitor`), tests each closed window with a calibrated two-sample test
(:mod:`collector.drift.statistics`), and exports ``otel_llm.drift.score``, ``otel_llm.drift.p_value``,
``otel_llm.drift.state`` and (numbers and categories) ``otel_llm.drift.psi`` per group and signal; a
drift event (start and end) is one structured log line, ``drift started`` / ``drift ended``. Its own
counts go to the same store: ``otel_llm.drift.spans_without_content`` (per group),
``otel_llm.drift.skipped`` (by reason) and ``otel_llm.drift.groups.evicted``.

Signals: ``prompt_embedding`` (last user message of ``gen_ai.input.messages``; spans without content
are counted), ``answer_embedding`` (off by default), ``input_tokens``, ``output_tokens``, ``latency``,
``finish_reason``, ``error`` and ``tool_call`` (no content needed).

Off the ingestion path: ``process()`` only extracts features and appends to windows. Embedding and all
tests run on one worker thread fed by a bounded queue; prompts beyond ``embedding::queue_size`` or
``embedding::max_per_minute`` are skipped and counted. The false-alarm rule is
:class:`collector.drift.statistics.AlarmRule`; ``docs/drift.md`` has the keys and defaults.

.. code-block:: yaml

    processors:
      drift:
        alpha: 0.01          # chance per window decision of a false drift event, whole group
        reference: {mode: first_n, size: 500, directory: /var/lib/otel-llm/drift}
        window: {size: 100, max_age: 10m}
        embedding: {embedder: {kind: openai, endpoint: http://127.0.0.1:8000/v1, model: bge-small}}
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, TraceBatch
from collector.drift.embedders import Embedder, EmbedderConfig, EmbeddingError, build_embedder
from collector.drift.features import Signal as DriftSignal
from collector.drift.monitor import Decision, DriftMonitor, Outcome, run_decision
from collector.drift.references import ReferenceStore
from collector.drift.statistics import AlarmRule, Transition
from collector.durations import Duration
from collector.logs import event
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

if TYPE_CHECKING:
    from collector.metrics import Counter as StoreCounter
    from collector.metrics import Gauge, MetricStore

__all__ = [
    "FACTORY",
    "DriftProcessor",
    "DriftProcessorConfig",
    "EmbeddingSettings",
    "ReferenceSettings",
    "WindowSettings",
]

SignalName = Literal[
    "prompt_embedding",
    "answer_embedding",
    "input_tokens",
    "output_tokens",
    "latency",
    "finish_reason",
    "error",
    "tool_call",
]


class ReferenceSettings(ComponentConfig):
    """``reference``: what each group's signals are compared with."""

    mode: Literal["first_n", "period", "file"] = Field(
        "first_n",
        description="`first_n`: the first `size` values after start; `period`: a reservoir of the values "
        "seen during `period` after a group's first span; `file`: only files written by "
        "`otel-llm drift save-reference` into `directory`.",
    )
    size: int = Field(
        500,
        ge=10,
        le=100_000,
        description="Reservoir capacity per group and signal (values); with tumbling windows each test "
        "uses one of `consecutive` disjoint folds of it (docs/drift.md). Five windows' worth by default.",
    )
    min_size: int = Field(100, ge=2, description="`period`: keep collecting past the period until this many.")
    period: Duration = Field(3600.0, gt=0, description="`period`: how long after a group's first span.")
    directory: str | None = Field(
        None,
        description="Where references are saved when complete and loaded on restart; none keeps them in memory.",
    )


class WindowSettings(ComponentConfig):
    """``window``: the current windows tested against the reference."""

    size: int = Field(100, ge=10, le=100_000, description="Values per window.")
    step: int | None = Field(
        None, ge=1, description="Sliding: decide every `step` values over the last `size`. None: tumbling."
    )
    min_size: int = Field(
        30, ge=2, description="A window closed by `max_age` needs at least this many values."
    )
    max_age: Duration = Field(
        600.0,
        ge=0,
        description="Close a window this long after it opened (sliding: drop older values); 0: off.",
    )


class EmbeddingSettings(ComponentConfig):
    """``embedding``: how prompt text becomes vectors, off the ingestion path."""

    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    queue_size: int = Field(
        1000, ge=1, description="Prompts waiting for the worker; beyond it they are skipped."
    )
    max_per_minute: int = Field(
        600, ge=1, description="Prompts embedded per minute at most; the rest are skipped."
    )
    batch_size: int = Field(32, ge=1, le=2048, description="Prompts per embedder call.")


_DEFAULT_SIGNALS: list[SignalName] = [
    "prompt_embedding",
    "input_tokens",
    "output_tokens",
    "latency",
    "finish_reason",
    "error",
    "tool_call",
]


class DriftProcessorConfig(ComponentConfig):
    """Config of the ``drift`` processor."""

    group_by: list[str] = Field(
        default_factory=lambda: [attrs.SERVICE_NAME, attrs.GEN_AI_REQUEST_MODEL],
        min_length=1,
        description="Attributes (span, then resource) whose values form a group.",
    )
    signals: list[SignalName] = Field(
        default_factory=lambda: list(_DEFAULT_SIGNALS), min_length=1, description="Signals to monitor."
    )
    alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Chance that a window decision starts a false drift event (see alpha_scope).",
    )
    alpha_scope: Literal["group", "signal"] = Field(
        "group",
        description="`group`: alpha holds for a group's signals together (Bonferroni); `signal`: each.",
    )
    consecutive: int = Field(2, ge=1, le=10, description="Alarmed windows in a row that make a drift event.")
    permutations: int | None = Field(
        None, ge=19, le=100_000, description="MMD permutations; None: 20 / per-window level, at least 199."
    )
    seed: int = Field(0, description="Seed of reservoirs and permutations, for reproducible decisions.")
    max_groups: int = Field(
        50, ge=1, le=100_000, description="Groups kept; the least recently seen is evicted."
    )
    reference: ReferenceSettings = Field(default_factory=ReferenceSettings)
    window: WindowSettings = Field(default_factory=WindowSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.window.min_size > self.window.size:
            found.append(("window::min_size", f"expected at most window::size ({self.window.size})"))
        if self.window.step is not None and self.window.step > self.window.size:
            found.append(("window::step", f"expected at most window::size ({self.window.size})"))
        if self.reference.mode == "period" and self.reference.min_size > self.reference.size:
            found.append(("reference::min_size", f"expected at most reference::size ({self.reference.size})"))
        folds = self.consecutive if self.window.step is None or self.window.step >= self.window.size else 1
        if self.reference.size < 10 * folds:
            found.append(
                (
                    "reference::size",
                    f"expected at least {10 * folds}: each of the {folds} reference folds needs 10 values",
                )
            )
        if self.reference.mode == "file" and not self.reference.directory:
            found.append(("reference::directory", "required when reference::mode is file"))
        if len(set(self.signals)) != len(self.signals):
            found.append(("signals", "expected each signal once"))
        if self.permutations is not None:
            rule = AlarmRule(
                alpha=self.alpha,
                consecutive=self.consecutive,
                disjoint_windows=self.window.step is None or self.window.step >= self.window.size,
                signals=len(self.signals) if self.alpha_scope == "group" else 1,
            )
            needed = math.ceil(1.0 / rule.test_alpha - 1e-9) - 1
            if self.permutations < needed:
                found.append(
                    (
                        "permutations",
                        f"expected at least {needed} to reach the per-window level "
                        f"{rule.test_alpha:.3g}, got {self.permutations}",
                    )
                )
        return found


_TICK_S = 1.0
_Skip = attrs.OtelLlmDriftSkipReasonValues
#: Metrics the canary extension writes too: one more label, the canary endpoint, empty on this
#: processor's series (exporters leave empty attributes out), so that both share one instrument.
_SHARED_WITH_CANARY = frozenset({m.OTEL_LLM_DRIFT_SCORE, m.OTEL_LLM_DRIFT_STATE})
_GAUGES = (m.OTEL_LLM_DRIFT_SCORE, m.OTEL_LLM_DRIFT_P_VALUE, m.OTEL_LLM_DRIFT_STATE, m.OTEL_LLM_DRIFT_PSI)


class DriftProcessor:
    """See the module docstring. ``process`` is called by one pipeline thread; a worker does the rest."""

    def __init__(
        self,
        config: DriftProcessorConfig,
        settings: CreateSettings,
        *,
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.logger = settings.logger
        self.id = str(settings.id)
        self.embedder = embedder or build_embedder(config.embedding.embedder)
        self.clock = clock
        directory = config.reference.directory
        self.store = ReferenceStore(Path(directory)) if directory else None
        #: Latest exported values: (metric name, labels) -> value. What the metric store gets.
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.monitor = DriftMonitor(
            config, embedder_identity=self.embedder.identity, store=self.store, on_evict=self._forget
        )
        # Resource key: service.name when grouped by it (exported as the series' resource), the other
        # group_by attributes and the signal as metric attributes.
        self._resource_attr = attrs.SERVICE_NAME if attrs.SERVICE_NAME in config.group_by else None
        self._resource_index = (
            config.group_by.index(self._resource_attr) if self._resource_attr is not None else None
        )
        #: group_by attributes that are metric attributes (all but the resource one), in group_by order.
        self._group_label_names = [name for name in config.group_by if name != self._resource_attr]
        self._group_label_indexes = [
            index for index, name in enumerate(config.group_by) if name != self._resource_attr
        ]
        self._label_names = [*self._group_label_names, attrs.OTEL_LLM_DRIFT_SIGNAL]
        self._store: MetricStore | None = None
        self._store_gauges: dict[str, Gauge] = {}
        self._without_content: StoreCounter | None = None
        self._skipped: StoreCounter | None = None
        self._evicted: StoreCounter | None = None
        self._cond = threading.Condition()
        self._texts: deque[tuple[tuple[str, ...], DriftSignal, str]] = deque()
        self._decisions: deque[Decision] = deque()
        self._tokens = float(config.embedding.max_per_minute)
        self._refilled = clock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._gauge_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        self._bind_store(host)
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"drift-{self.id}", daemon=True)
        self._thread.start()
        event(
            self.logger,
            logging.INFO,
            "drift processor started",
            embedder=self.embedder.identity,
            test_alpha=round(self.monitor.rule.test_alpha, 6),
            permutations=self.monitor.permutations,
            reference_mode=self.config.reference.mode,
        )

    def shutdown(self, timeout_s: float) -> None:
        thread = self._thread
        if thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            thread.join(max(0.0, timeout_s))
            self._thread = None
        self._save_references()
        if thread is not None:
            event(self.logger, logging.INFO, "drift processor stopped", **_flat(self.monitor.snapshot()))

    # -- hot path --------------------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch | None:
        if not isinstance(batch, TraceBatch):
            return batch
        spans = batch.genai_spans()
        if not spans:
            return batch
        now = self.clock()
        budget, reason = self._text_budget(now)
        decisions: list[Decision] = []
        texts: list[tuple[tuple[str, ...], DriftSignal, str]] = []
        unread = bad = 0
        without_content: Counter[tuple[str, ...]] = Counter()
        for span in spans:
            try:
                due, wanted, left = self.monitor.observe_span(
                    span, now, want_text=len(texts) < budget, without_content=without_content
                )
            except Exception:  # bad data is counted and dropped here; the batch always goes on unchanged
                bad += 1
                continue
            decisions.extend(due)
            texts.extend(wanted)
            unread += left
        if decisions or texts:
            self._enqueue(decisions, texts)
        if unread:
            self._count_skipped(reason, unread)
        if bad:
            self._count_skipped(_Skip.BAD_SPAN, bad)
        if without_content:
            self._count_without_content(without_content)
        return batch

    def _text_budget(self, now: float) -> tuple[int, str]:
        """How many prompts this batch may still queue, and which limit binds when it is used up."""
        settings = self.config.embedding
        with self._cond:
            per_second = settings.max_per_minute / 60.0
            self._tokens = min(
                float(settings.max_per_minute), self._tokens + (now - self._refilled) * per_second
            )
            self._refilled = now
            tokens = int(self._tokens)
            room = settings.queue_size - len(self._texts)
        return max(0, min(tokens, room)), (_Skip.RATE_LIMITED if tokens <= room else _Skip.QUEUE_FULL)

    def _enqueue(
        self, decisions: list[Decision], texts: list[tuple[tuple[str, ...], DriftSignal, str]]
    ) -> None:
        limited = full = 0
        settings = self.config.embedding
        with self._cond:
            self._decisions.extend(decisions)
            for item in texts:
                if self._tokens < 1.0:
                    limited += 1
                elif len(self._texts) >= settings.queue_size:
                    full += 1
                else:
                    self._tokens -= 1.0
                    self._texts.append(item)
            self._cond.notify()
        if limited:
            self._count_skipped(_Skip.RATE_LIMITED, limited)
        if full:
            self._count_skipped(_Skip.QUEUE_FULL, full)

    # -- worker ----------------------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + _TICK_S
        while True:
            with self._cond:
                while not self._stopping and not self._decisions and not self._texts:
                    remaining = next_tick - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stopping:
                    return
            try:
                self.run_pending(max_items=self.config.embedding.batch_size)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + _TICK_S
                    self._queue_decisions(self.monitor.tick(self.clock()))
                    self._save_references()
            except Exception as exc:  # the worker must survive any fault; logged, never per span
                event(
                    self.logger, logging.WARNING, "drift worker error", error=f"{type(exc).__name__}: {exc}"
                )

    def _queue_decisions(self, decisions: list[Decision]) -> None:
        if decisions:
            with self._cond:
                self._decisions.extend(decisions)

    def run_pending(self, max_items: int | None = None) -> int:
        """Run queued decisions, then embed up to ``max_items`` queued prompts (all when ``None``), on
        the calling thread; return how many items were handled. The worker calls this; tests call it
        directly instead of starting the worker."""
        handled = 0
        while True:
            with self._cond:
                decision = self._decisions.popleft() if self._decisions else None
            if decision is None:
                break
            self._decide(decision)
            handled += 1
        batch_size = self.config.embedding.batch_size
        while max_items is None or handled < max_items:
            with self._cond:
                take = min(batch_size, len(self._texts))
                chunk = [self._texts.popleft() for _ in range(take)]
            if not chunk:
                break
            handled += len(chunk)
            try:
                vectors = self.embedder.embed([text for _, _, text in chunk])
            except EmbeddingError as exc:
                self._count_skipped(_Skip.EMBED_ERROR, len(chunk))
                event(
                    self.logger, logging.WARNING, "drift embedding failed", error=str(exc), prompts=len(chunk)
                )
                continue
            now = self.clock()
            for (key, signal, _), vector in zip(chunk, vectors, strict=True):
                for decision in self.monitor.observe_vector(key, signal, vector, now):
                    self._decide(decision)
        return handled

    def tick(self) -> None:
        """Time-driven closes and reference saving, on the calling thread (the worker does it each second)."""
        for decision in self.monitor.tick(self.clock()):
            self._decide(decision)
        self._save_references()

    def _decide(self, decision: Decision) -> None:
        outcome = self.monitor.apply(decision, run_decision(decision))
        if outcome is not None:
            self._publish(outcome)

    def _save_references(self) -> None:
        if self.store is None:
            return
        pending = self.monitor.take_unsaved()
        for labels, signal, values in pending:
            try:
                self.store.save(labels, signal, values, self.embedder.identity)
            except OSError as exc:
                event(
                    self.logger,
                    logging.WARNING,
                    "drift reference not saved",
                    error=str(exc),
                    signal=signal.value,
                )

    # -- export ----------------------------------------------------------------------------------

    def _bind_store(self, host: Host) -> None:
        try:
            from collector.metrics import shared_store
        except ImportError:  # the derived-metric store is optional: values stay in `gauges`
            return
        store = self._store = shared_store(host)
        max_age = self.config.window.max_age
        # A series is refreshed at every decision, at least once per max_age; idle ones (evicted groups)
        # go after three of those, or an hour.
        expiry_s = max(3600.0, 3.0 * max_age)
        # The canary extension shares score and state; see the same note there.
        limit = max(2000, self.config.max_groups * len(self.config.signals))
        # Counters: the skip reasons and evictions have fixed labels; spans without content are per group.
        self._skipped = store.counter(m.OTEL_LLM_DRIFT_SKIPPED, (attrs.OTEL_LLM_DRIFT_SKIP_REASON,))
        self._evicted = store.counter(m.OTEL_LLM_DRIFT_GROUPS_EVICTED, ())
        counter = store.counter(
            m.OTEL_LLM_DRIFT_SPANS_WITHOUT_CONTENT,
            self._group_label_names,
            cardinality_limit=max(2000, self.config.max_groups),
            expiry_s=expiry_s,
        )
        if self._same_labels(counter.label_names, self._group_label_names, counter.name):
            self._without_content = counter
        gauges: dict[str, Gauge] = {}
        for name in _GAUGES:
            wanted = self._gauge_label_names(name)
            gauge = store.gauge(name, wanted, cardinality_limit=limit, expiry_s=expiry_s)
            if not self._same_labels(gauge.label_names, wanted, name):
                # Another drift processor (or the canary) created the instrument with other group_by
                # attributes; one instrument has one label set, so this one keeps its values in `gauges`.
                return
            gauges[name] = gauge
        self._store_gauges = gauges

    def _gauge_label_names(self, name: str) -> list[str]:
        if name in _SHARED_WITH_CANARY:
            return [*self._label_names, attrs.OTEL_LLM_CANARY_ENDPOINT]
        return self._label_names

    def _same_labels(self, existing: Sequence[str], wanted: Sequence[str], name: str) -> bool:
        if tuple(existing) == tuple(wanted):
            return True
        event(
            self.logger,
            logging.WARNING,
            "drift metrics not exported: label names differ from an existing instrument",
            metric=name,
            existing=",".join(existing),
        )
        return False

    def _count_skipped(self, reason: str, count: int) -> None:
        self.monitor.count_skipped(reason, count)
        if self._skipped is not None:
            self._skipped.add(((), (reason,)), float(count), time.time_ns())

    def _resource_key(self, service: str | None) -> tuple[str, ...]:
        """The series' resource key: ``(service,)``, registered with the store, or empty when not grouped
        by service.name."""
        if service is None or self._resource_attr is None or self._store is None:
            return ()
        self._store.register_resource((service,), ((self._resource_attr, service),))
        return (service,)

    def _count_without_content(self, tally: Counter[tuple[str, ...]]) -> None:
        """One store update per batch: spans without a prompt, per group."""
        counter = self._without_content
        if counter is None:
            return
        position = self._resource_index
        items = [
            (
                (
                    self._resource_key(None if position is None else key[position]),
                    tuple(key[index] for index in self._group_label_indexes),
                ),
                float(count),
            )
            for key, count in tally.items()
        ]
        counter.add_many(items, time.time_ns())

    def _publish(self, outcome: Outcome) -> None:
        labels = dict(outcome.labels)
        labels[attrs.OTEL_LLM_DRIFT_SIGNAL] = outcome.signal.value
        key = tuple(sorted(labels.items()))
        values = {
            m.OTEL_LLM_DRIFT_SCORE: outcome.result.score,
            m.OTEL_LLM_DRIFT_P_VALUE: outcome.result.p_value,
            m.OTEL_LLM_DRIFT_STATE: 1.0 if outcome.drifted else 0.0,
        }
        psi = outcome.extras.get("psi")  # numbers and categories; computed with the test, so free here
        if psi is not None and math.isfinite(psi):
            values[m.OTEL_LLM_DRIFT_PSI] = psi
        with self._gauge_lock:
            for name, value in values.items():
                self.gauges[(name, key)] = float(value)
        if self._store_gauges:
            resource = self._resource_key(
                None if self._resource_attr is None else labels[self._resource_attr]
            )
            attributes = tuple(labels.get(name, "") for name in self._label_names)
            # The canary endpoint label of the shared instruments: empty on this processor's series.
            series = (resource, attributes)
            shared = (resource, (*attributes, ""))
            now_ns = time.time_ns()
            for name, value in values.items():
                target = shared if name in _SHARED_WITH_CANARY else series
                self._store_gauges[name].set(target, float(value), now_ns)
        if outcome.transition is not Transition.NONE:
            event(
                self.logger,
                logging.WARNING if outcome.transition is Transition.STARTED else logging.INFO,
                f"drift {outcome.transition.value}",
                **outcome.labels,
                signal=outcome.signal.value,
                score=outcome.result.score,
                p_value=outcome.result.p_value,
                test_alpha=self.monitor.rule.test_alpha,
                alpha=self.config.alpha,
                consecutive=self.config.consecutive,
                window_size=outcome.window_size,
                reference_size=outcome.reference_size,
                **outcome.extras,
            )

    def _forget(self, labels: dict[str, str]) -> None:
        """An evicted group's series stop being exported (called under the monitor's lock); counted."""
        if self._evicted is not None:
            self._evicted.add(((), ()), 1.0, time.time_ns())
        wanted = set(labels.items())
        with self._gauge_lock:
            for key in [k for k in self.gauges if wanted <= set(k[1])]:
                del self.gauges[key]


def _flat(snapshot: dict[str, Any]) -> dict[str, Any]:
    skipped = snapshot.pop("skipped", {})
    snapshot.update({f"skipped_{reason}": count for reason, count in skipped.items()})
    return snapshot


def _create(config: DriftProcessorConfig, settings: CreateSettings) -> DriftProcessor:
    return DriftProcessor(config, settings)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="drift",
    config_type=DriftProcessorConfig,
    create=_create,
    signals=frozenset({Signal.TRACES}),
    description="Drift of prompts (embeddings) and request statistics against a reference, with a set false-alarm rate.",
)
