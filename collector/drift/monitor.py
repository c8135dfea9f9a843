"""Per-group references, current windows and alarm state: the synchronous core of the drift processor.

:class:`DriftMonitor` has no threads and does no I/O; the processor feeds it spans and embedding
vectors, runs the :class:`Decision` objects it returns (:func:`run_decision`, the expensive part)
outside its lock, and hands each result back to :meth:`DriftMonitor.apply`. Every public method takes
the monitor's lock, so the ingestion thread and the embedding worker may call it concurrently.

Per group (``group_by`` attribute values) and signal:

- the **reference**: ``first_n`` keeps the first ``reference::size`` values; ``period`` keeps a uniform
  reservoir of ``reference::size`` values seen during ``reference::period`` after the group's first
  span (longer if fewer than ``reference::min_size`` arrived); ``file`` uses a saved file only. Once
  complete it is frozen (and saved when a directory is set); values after it go to windows.
- the **current window**: tumbling (``window::step`` = ``window::size``) or sliding (a decision every
  ``step`` values over the last ``size``); a window also closes after ``window::max_age`` once it
  has ``window::min_size`` values, so quiet groups are still tested.
- an :class:`~collector.drift.statistics.AlarmTracker` holding the 0/1 state. With tumbling windows
  and ``consecutive`` k > 1, window number i is tested against reference fold ``i mod k``
  (:meth:`~collector.drift.statistics.AlarmRule.fold`), so k consecutive tests share no data.

Memory is bounded: at most ``max_groups`` groups (least recently seen evicted first, counted), each
signal holding at most ``reference::size + window::size`` values.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from collector.drift.features import SIGNAL_KINDS, Signal, SignalKind, drift_values, extract_features
from collector.drift.references import ReferenceStore, ReferenceValues
from collector.drift.statistics import (
    AlarmRule,
    AlarmTracker,
    DriftResult,
    Transition,
    chi_squared_test,
    ks_test,
    population_stability_index,
    population_stability_index_categorical,
    two_sample_test,
    wasserstein,
)
from collector.genai.spans import GenAISpan
from otel_llm.conventions import attributes as attrs

if TYPE_CHECKING:
    from collector.processors.drift import DriftProcessorConfig

__all__ = ["Decision", "DecisionResult", "DriftMonitor", "MonitorStats", "Outcome", "run_decision"]

GroupKey = tuple[str, ...]


class Reservoir:
    """A uniform random sample of at most ``capacity`` items of a stream (Algorithm R), seeded."""

    __slots__ = ("_rng", "capacity", "items", "seen")

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.items: list[Any] = []
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        slot = int(self._rng.integers(0, self.seen))
        if slot < self.capacity:
            self.items[slot] = item


class Window:
    """The current window of one signal: tumbling when ``step == size``, else sliding."""

    __slots__ = ("_last_decision", "_since", "items", "max_age_s", "min_size", "size", "step")

    def __init__(self, size: int, step: int, min_size: int, max_age_s: float) -> None:
        self.size = size
        self.step = step
        self.min_size = min_size
        self.max_age_s = max_age_s
        self.items: deque[tuple[float, Any]] = deque(maxlen=size)
        self._since = 0
        self._last_decision: float | None = None

    @property
    def tumbling(self) -> bool:
        return self.step >= self.size

    def add(self, value: Any, now: float) -> list[Any] | None:
        """Append one value; return the window's values when a decision is due."""
        if self._last_decision is None:
            self._last_decision = now
        self.items.append((now, value))
        self._since += 1
        if self.tumbling:
            if len(self.items) >= self.size:
                return self._close(now)
            return None
        self._evict(now)
        if self._since >= self.step and len(self.items) >= self.min_size:
            return self._close(now)
        return None

    def due(self, now: float) -> list[Any] | None:
        """The window's values when its time is up (``max_age``) and it has ``min_size`` values."""
        if not self.items or self._last_decision is None or self.max_age_s <= 0:
            return None
        if not self.tumbling:
            self._evict(now)
        started = self.items[0][0] if self.tumbling else self._last_decision
        if now - started >= self.max_age_s and len(self.items) >= self.min_size and self._since > 0:
            return self._close(now)
        return None

    def _evict(self, now: float) -> None:
        if self.max_age_s > 0:
            while self.items and now - self.items[0][0] > self.max_age_s:
                self.items.popleft()

    def _close(self, now: float) -> list[Any]:
        values = [value for _, value in self.items]
        self._since = 0
        self._last_decision = now
        if self.tumbling:
            self.items.clear()
        return values


@dataclass(eq=False)
class _SignalState:
    signal: Signal
    kind: SignalKind
    reservoir: Reservoir | None
    window: Window
    tracker: AlarmTracker
    reference: ReferenceValues | None = None
    # Category counts per reference fold (see AlarmRule.fold).
    fold_counts: list[dict[str, int]] | None = None
    saved: bool = False
    decisions: int = 0
    last: DriftResult | None = None


@dataclass(eq=False)
class _Group:
    key: GroupKey
    labels: dict[str, str]
    created: float
    signals: dict[Signal, _SignalState]


@dataclass(frozen=True, eq=False)
class Decision:
    """One window to test against its reference; self-contained, so it runs outside the lock."""

    key: GroupKey
    labels: dict[str, str]
    signal: Signal
    kind: SignalKind
    reference: ReferenceValues
    reference_counts: dict[str, int] | None
    current: list[Any]
    alpha: float
    seed: int
    permutations: int
    state: _SignalState


@dataclass(frozen=True)
class DecisionResult:
    """A test result with the dashboard extras (Wasserstein, PSI) of the window."""

    result: DriftResult
    extras: dict[str, float]


@dataclass(frozen=True)
class Outcome:
    """A decision applied to the alarm state: what to export and whether an event starts or ends."""

    labels: dict[str, str]
    signal: Signal
    result: DriftResult
    extras: dict[str, float]
    drifted: bool
    transition: Transition
    window_size: int
    reference_size: int


@dataclass
class MonitorStats:
    """Counts for self-telemetry; read under the monitor's lock (see :meth:`DriftMonitor.snapshot`)."""

    spans: int = 0
    spans_without_content: int = 0
    groups_created: int = 0
    groups_evicted: int = 0
    references_loaded: int = 0
    values_without_reference: int = 0
    decisions: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def run_decision(decision: Decision) -> DecisionResult:
    """Run the test of one :class:`Decision`; thread safe, no lock held."""
    if decision.kind is SignalKind.EMBEDDING:
        current = np.vstack(decision.current)
        result = two_sample_test(
            decision.reference,
            current,
            alpha=decision.alpha,
            seed=decision.seed,
            permutations=decision.permutations,
        )
        return DecisionResult(result, {})
    if decision.kind is SignalKind.NUMBER:
        current_numbers = np.asarray(decision.current, dtype=np.float64)
        result = ks_test(decision.reference, current_numbers, alpha=decision.alpha)
        extras = {
            "wasserstein": wasserstein(decision.reference, current_numbers),
            "psi": population_stability_index(decision.reference, current_numbers),
        }
        return DecisionResult(result, extras)
    reference_counts = decision.reference_counts or {}
    current_counts = dict(Counter(str(v) for v in decision.current))
    result = chi_squared_test(reference_counts, current_counts, alpha=decision.alpha, seed=decision.seed)
    return DecisionResult(
        result, {"psi": population_stability_index_categorical(reference_counts, current_counts)}
    )


class DriftMonitor:
    """See the module docstring. ``embedder_identity`` is checked against saved embedding references."""

    def __init__(
        self,
        config: DriftProcessorConfig,
        *,
        embedder_identity: str,
        store: ReferenceStore | None = None,
        max_groups_override: int | None = None,
        on_evict: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self.config = config
        self.embedder_identity = embedder_identity
        self.store = store
        self.max_groups = max_groups_override or config.max_groups
        self.on_evict = on_evict
        self.signals: tuple[Signal, ...] = tuple(Signal(s) for s in config.signals)
        window = config.window
        self.tumbling = window.step is None or window.step >= window.size
        self.rule = AlarmRule(
            alpha=config.alpha,
            consecutive=config.consecutive,
            disjoint_windows=self.tumbling,
            signals=len(self.signals) if config.alpha_scope == "group" else 1,
        )
        self.permutations = config.permutations or self.rule.permutations_for()
        #: Fewest values a usable reference has: 10 per fold (see AlarmRule.fold).
        self.min_reference = 10 * self.rule.fold(0)[1]
        self.lock = threading.Lock()
        self.stats = MonitorStats()
        self._groups: OrderedDict[GroupKey, _Group] = OrderedDict()
        self._to_save: list[tuple[dict[str, str], Signal, ReferenceValues]] = []
        self._want_prompt = Signal.PROMPT_EMBEDDING in self.signals
        self._want_answer = Signal.ANSWER_EMBEDDING in self.signals

    # -- ingestion -------------------------------------------------------------------------------

    def group_key(self, span: GenAISpan) -> GroupKey:
        """Values of the ``group_by`` attributes; normalised names use the span's normalised fields."""
        values: list[str] = []
        for name in self.config.group_by:
            if name == attrs.SERVICE_NAME:
                values.append(span.service_name)
            elif name == attrs.GEN_AI_REQUEST_MODEL:
                values.append(span.request_model)
            elif name == attrs.GEN_AI_PROVIDER_NAME:
                values.append(span.provider)
            elif name == attrs.GEN_AI_OPERATION_NAME:
                values.append(span.operation)
            else:
                value = span.attribute(name)
                values.append("" if value is None else str(value))
        return tuple(values)

    def observe_span(
        self,
        span: GenAISpan,
        now: float,
        *,
        want_text: bool = True,
        without_content: Counter[GroupKey] | None = None,
    ) -> tuple[list[Decision], list[tuple[GroupKey, Signal, str]], int]:
        """Record a span's statistics; return due decisions, the texts to embed (off this thread) and
        how many texts were left unread because ``want_text`` is false (the caller has no embedding
        budget left, so the messages are not even decoded).

        A span without a user prompt to embed is counted in the stats and, when given, in
        ``without_content`` under its group key (the caller exports those per batch)."""
        key = self.group_key(span)
        values = drift_values(span)
        features = extract_features(
            span,
            want_prompt=self._want_prompt and want_text,
            want_answer=self._want_answer and want_text,
            values=values,
        )
        decisions: list[Decision] = []
        texts: list[tuple[GroupKey, Signal, str]] = []
        unread = 0
        with self.lock:
            self.stats.spans += 1
            group = self._group(key, now)
            for signal, state in group.signals.items():
                if state.kind is SignalKind.NUMBER:
                    number = features.numbers.get(signal)
                    if number is not None:
                        self._add(group, state, number, now, decisions)
                elif state.kind is SignalKind.CATEGORY:
                    label = features.categories.get(signal)
                    if label is not None:
                        self._add(group, state, label, now, decisions)
                elif not want_text:
                    source = (
                        attrs.GEN_AI_INPUT_MESSAGES
                        if signal is Signal.PROMPT_EMBEDDING
                        else attrs.GEN_AI_OUTPUT_MESSAGES
                    )
                    if source in values:
                        unread += 1
                    elif signal is Signal.PROMPT_EMBEDDING:
                        self.stats.spans_without_content += 1
                        if without_content is not None:
                            without_content[key] += 1
                else:
                    text = features.prompt_text if signal is Signal.PROMPT_EMBEDDING else features.answer_text
                    if text is None:
                        if signal is Signal.PROMPT_EMBEDDING:
                            self.stats.spans_without_content += 1
                            if without_content is not None:
                                without_content[key] += 1
                    elif self._accepting(state):
                        texts.append((key, signal, text))
                    else:
                        self.stats.values_without_reference += 1
        return decisions, texts, unread

    def observe_vector(self, key: GroupKey, signal: Signal, vector: Any, now: float) -> list[Decision]:
        """Record one embedding (from the worker); the group may have been evicted meanwhile."""
        decisions: list[Decision] = []
        with self.lock:
            group = self._group(key, now)
            state = group.signals.get(signal)
            if state is not None:
                self._add(group, state, np.asarray(vector, dtype=np.float32), now, decisions)
        return decisions

    def tick(self, now: float) -> list[Decision]:
        """Time-driven work: finish ``period`` references and close windows past ``max_age``."""
        decisions: list[Decision] = []
        with self.lock:
            for group in self._groups.values():
                for state in group.signals.values():
                    if state.reference is None:
                        self._maybe_freeze(group, state, now)
                        continue
                    values = state.window.due(now)
                    if values is not None:
                        decisions.append(self._decision(group, state, values))
        return decisions

    def apply(self, decision: Decision, outcome: DecisionResult) -> Outcome | None:
        """Feed a result to the signal's alarm state; ``None`` when the group was evicted meanwhile."""
        with self.lock:
            group = self._groups.get(decision.key)
            state = decision.state
            if group is None or group.signals.get(decision.signal) is not state:
                return None
            transition = state.tracker.update(outcome.result.drifted)
            state.last = outcome.result
            self.stats.decisions += 1
            return Outcome(
                labels=group.labels,
                signal=decision.signal,
                result=outcome.result,
                extras=outcome.extras,
                drifted=state.tracker.drifted,
                transition=transition,
                window_size=len(decision.current),
                reference_size=len(decision.reference),
            )

    # -- persistence -----------------------------------------------------------------------------

    def take_unsaved(self) -> list[tuple[dict[str, str], Signal, ReferenceValues]]:
        """Completed references not yet written (the caller writes them, off the lock)."""
        with self.lock:
            pending, self._to_save = self._to_save, []
            return pending

    def references(
        self, include_partial: bool = False
    ) -> Iterator[tuple[dict[str, str], Signal, ReferenceValues]]:
        """Every group's references: frozen ones, and with ``include_partial`` the ones still filling."""
        with self.lock:
            found: list[tuple[dict[str, str], Signal, ReferenceValues]] = []
            for group in self._groups.values():
                for signal, state in group.signals.items():
                    if state.reference is not None:
                        found.append((group.labels, signal, state.reference))
                    elif (
                        include_partial
                        and state.reservoir is not None
                        and len(state.reservoir.items) >= self.min_reference
                    ):
                        found.append((group.labels, signal, _freeze(state.kind, state.reservoir.items)))
        return iter(found)

    def snapshot(self) -> dict[str, Any]:
        """Counters and sizes for logs and tests."""
        with self.lock:
            return {
                "groups": len(self._groups),
                "spans": self.stats.spans,
                "spans_without_content": self.stats.spans_without_content,
                "groups_created": self.stats.groups_created,
                "groups_evicted": self.stats.groups_evicted,
                "references_loaded": self.stats.references_loaded,
                "values_without_reference": self.stats.values_without_reference,
                "decisions": self.stats.decisions,
                "skipped": dict(self.stats.skipped),
                "stored_values": sum(
                    len(s.window.items)
                    + (len(s.reservoir.items) if s.reservoir is not None else 0)
                    + (0 if s.reference is None else len(s.reference))
                    for g in self._groups.values()
                    for s in g.signals.values()
                ),
            }

    def state(self, labels: dict[str, str], signal: Signal) -> tuple[bool, DriftResult | None] | None:
        """(drifted, last result) of one group and signal; ``None`` for an unknown group."""
        key = tuple(labels.get(name, "") for name in self.config.group_by)
        with self.lock:
            group = self._groups.get(key)
            if group is None or signal not in group.signals:
                return None
            state = group.signals[signal]
            return state.tracker.drifted, state.last

    def count_skipped(self, reason: str, count: int = 1) -> None:
        """Record spans skipped for embedding (``queue_full``, ``rate_limited``, ``embed_error``) or
        not read at all (``bad_span``): the values of ``otel_llm.drift.skip.reason``."""
        with self.lock:
            self.stats.skipped[reason] += count

    # -- internals (lock held) -------------------------------------------------------------------

    def _group(self, key: GroupKey, now: float) -> _Group:
        group = self._groups.get(key)
        if group is not None:
            self._groups.move_to_end(key)
            return group
        while len(self._groups) >= self.max_groups:
            _, evicted = self._groups.popitem(last=False)
            self.stats.groups_evicted += 1
            self._queue_unsaved(evicted)
            if self.on_evict is not None:
                self.on_evict(evicted.labels)
        labels = dict(zip(self.config.group_by, key, strict=True))
        group = _Group(key=key, labels=labels, created=now, signals={})
        seed = zlib.crc32(repr((self.config.seed, key)).encode())
        window = self.config.window
        step = window.size if self.tumbling else (window.step or window.size)
        for index, signal in enumerate(self.signals):
            kind = SIGNAL_KINDS[signal]
            state = _SignalState(
                signal=signal,
                kind=kind,
                reservoir=None
                if self.config.reference.mode == "file"
                else Reservoir(self.config.reference.size, seed + index),
                window=Window(window.size, step, min(window.min_size, window.size), window.max_age),
                tracker=AlarmTracker(self.rule),
            )
            if self.store is not None:
                loaded = self.store.load(labels, signal, self.embedder_identity)
                if loaded is not None and len(loaded.values) >= self.min_reference:
                    self._set_reference(state, loaded.values)
                    state.saved = True
                    self.stats.references_loaded += 1
            group.signals[signal] = state
        self._groups[key] = group
        self.stats.groups_created += 1
        return group

    def _accepting(self, state: _SignalState) -> bool:
        return state.reference is not None or state.reservoir is not None

    def _add(self, group: _Group, state: _SignalState, value: Any, now: float, out: list[Decision]) -> None:
        if state.reference is None:
            self._maybe_freeze(group, state, now)
        if state.reference is None:
            if state.reservoir is None:
                self.stats.values_without_reference += 1
                return
            state.reservoir.add(value)
            self._maybe_freeze(group, state, now)
            return
        values = state.window.add(value, now)
        if values is not None:
            out.append(self._decision(group, state, values))

    def _maybe_freeze(self, group: _Group, state: _SignalState, now: float) -> None:
        reservoir = state.reservoir
        if reservoir is None or state.reference is not None:
            return
        reference = self.config.reference
        if reference.mode == "first_n":
            complete = reservoir.seen >= reference.size
        else:
            complete = now - group.created >= reference.period and len(reservoir.items) >= reference.min_size
        if complete:
            self._set_reference(state, _freeze(state.kind, reservoir.items))
            state.reservoir = None
            if self.store is not None:
                self._to_save.append((group.labels, state.signal, state.reference))  # type: ignore[arg-type]
                state.saved = True

    def _set_reference(self, state: _SignalState, values: ReferenceValues) -> None:
        state.reference = values
        if state.kind is SignalKind.CATEGORY:
            _, stride = self.rule.fold(0)
            state.fold_counts = [
                dict(Counter(str(v) for v in values[start::stride].tolist())) for start in range(stride)
            ]

    def _queue_unsaved(self, group: _Group) -> None:
        if self.store is None:
            return
        for signal, state in group.signals.items():
            if state.reference is not None and not state.saved:
                self._to_save.append((group.labels, signal, state.reference))

    def _decision(self, group: _Group, state: _SignalState, values: list[Any]) -> Decision:
        assert state.reference is not None
        start, stride = self.rule.fold(state.decisions)
        state.decisions += 1
        seed = zlib.crc32(repr((self.config.seed, group.key, state.signal.value, state.decisions)).encode())
        return Decision(
            key=group.key,
            labels=group.labels,
            signal=state.signal,
            kind=state.kind,
            reference=state.reference[start::stride],
            reference_counts=None if state.fold_counts is None else state.fold_counts[start],
            current=values,
            alpha=self.rule.test_alpha,
            seed=seed,
            permutations=self.permutations,
            state=state,
        )


def _freeze(kind: SignalKind, items: list[Any]) -> ReferenceValues:
    if kind is SignalKind.EMBEDDING:
        return np.vstack(items).astype(np.float32)
    if kind is SignalKind.NUMBER:
        return np.asarray(items, dtype=np.float64)
    return np.asarray([str(v) for v in items], dtype=np.str_)
