"""The derived-metric store: counters, histograms and gauges that processors write and exporters read.

One store per service (``host.get_shared(STORE_KEY, ...)``). A series is identified by a resource key
(the values of a few resource attributes, chosen by the writer) plus the metric's attribute values in
the metric's fixed label order. The store owns no configuration of its own besides the instance id:
each instrument carries its cardinality limit and idle expiry, set by the processor that creates it.

Thread safety: every instrument has its own lock, held only for dictionary updates. Writers that
record many points batch them (:meth:`Counter.add_many`, :meth:`Histogram.record_many`) so a 512-span
request costs one lock acquisition per instrument, not one per span. :meth:`MetricStore.snapshot`
copies each instrument under its lock, one at a time, so a scrape never stops all writers at once.

Memory bound: an instrument holds at most ``cardinality_limit`` series plus one overflow series;
points for any further new series are folded into the overflow series (``otel.metric.overflow=true``,
no resource, no other attributes) and counted in ``otel_llm.metric.overflow``. Idle series are removed
after ``expiry_s`` seconds without a point; a series that comes back later starts again with a new
start time, so cumulative readers see a reset rather than a jump.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

__all__ = [
    "OVERFLOW_ATTRIBUTE",
    "OVERFLOW_KEY",
    "STORE_KEY",
    "Counter",
    "Gauge",
    "Histogram",
    "InstrumentSnapshot",
    "MetricStore",
    "PointSnapshot",
    "ResourceKey",
    "SeriesKey",
]

#: ``host.shared`` key of the service's store.
STORE_KEY: Final = "collector.metrics.store"
#: The attribute of the overflow series (the OpenTelemetry metrics SDK's name).
OVERFLOW_ATTRIBUTE: Final = attrs.OTEL_METRIC_OVERFLOW

#: Values of the writer's resource key attributes, in its configured order.
ResourceKey = tuple[str, ...]
#: (resource key, attribute values in the instrument's label order).
SeriesKey = tuple[ResourceKey, tuple[object, ...]]
#: The one series new keys fold into past the cardinality limit.
OVERFLOW_KEY: Final[SeriesKey] = ((), ("\x00overflow",))

_DEFAULT_LIMIT = 2000
_DEFAULT_EXPIRY_S = 600.0


@dataclass(frozen=True, slots=True)
class PointSnapshot:
    """One series at snapshot time; ``value`` is a float (counter, gauge) or histogram fields."""

    resource: ResourceKey
    attributes: tuple[tuple[str, object], ...]
    start_ns: int
    value: float
    count: int = 0
    total: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0
    bucket_counts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class InstrumentSnapshot:
    """All series of one instrument at ``time_ns``."""

    name: str
    kind: str  # "counter", "histogram" or "gauge"
    unit: str
    description: str
    buckets: tuple[float, ...]
    points: tuple[PointSnapshot, ...]
    time_ns: int


class _Instrument:
    """Shared parts: identity, lock, series map, limit and expiry."""

    kind = ""

    def __init__(
        self,
        store: MetricStore,
        name: str,
        label_names: Sequence[str],
        unit: str,
        description: str,
        cardinality_limit: int,
        expiry_s: float,
    ) -> None:
        self.store = store
        self.name = name
        self.label_names = tuple(label_names)
        self.unit = unit
        self.description = description
        self.cardinality_limit = cardinality_limit
        self.expiry_ns = int(expiry_s * 1e9)
        self._lock = threading.Lock()
        # series key -> mutable state list; index 0 start_ns, 1 last_ns, then kind-specific fields
        self._series: dict[SeriesKey, list[object]] = {}
        self._next_sweep_ns = 0
        self._folded = 0  # points folded since the last _report_folded(), under the lock

    def __len__(self) -> int:
        return len(self._series)

    def _admit(self, key: SeriesKey, now_ns: int) -> SeriesKey:
        """The key to store a new series under: itself, or the overflow key past the limit.

        Called with the lock held, only for keys not yet present.
        """
        if len(self._series) < self.cardinality_limit or key == OVERFLOW_KEY:
            return key
        if self.expiry_ns and now_ns >= self._next_sweep_ns:
            # Before folding, drop idle series; at most once a second so a flood of new keys stays cheap.
            self._sweep_locked(now_ns)
            self._next_sweep_ns = now_ns + 1_000_000_000
            if len(self._series) < self.cardinality_limit:
                return key
        self._folded += 1
        return OVERFLOW_KEY

    def _new_state(self, now_ns: int) -> list[object]:
        raise NotImplementedError

    def _state_locked(self, key: SeriesKey, now_ns: int) -> list[object]:
        """The state for a key not in the map: its own new one, or the overflow series'. Lock held."""
        admitted = self._admit(key, now_ns)
        state = self._series.get(admitted)
        if state is None:
            state = self._series[admitted] = self._new_state(now_ns)
        return state

    def _report_folded(self, now_ns: int) -> None:
        """Move the folded-point count to the store's overflow counter (after releasing the lock)."""
        folded, self._folded = self._folded, 0
        if folded:
            self.store._overflowed(self.name, folded, now_ns)

    def _sweep_locked(self, now_ns: int) -> int:
        if not self.expiry_ns:
            return 0
        cutoff = now_ns - self.expiry_ns
        stale = [key for key, state in self._series.items() if state[1] < cutoff]  # type: ignore[operator]
        for key in stale:
            del self._series[key]
        return len(stale)

    def sweep(self, now_ns: int | None = None) -> int:
        """Remove series idle longer than the expiry; returns how many."""
        with self._lock:
            return self._sweep_locked(time.time_ns() if now_ns is None else now_ns)

    def _attributes(self, key: SeriesKey) -> tuple[tuple[str, object], ...]:
        if key == OVERFLOW_KEY:
            return ((OVERFLOW_ATTRIBUTE, True),)
        return tuple(zip(self.label_names, key[1], strict=True))


class _Scalar(_Instrument):
    """One number per series (counter, gauge)."""

    def _new_state(self, now_ns: int) -> list[object]:
        # start, last, value
        return [now_ns, now_ns, 0.0]

    def snapshot(self, now_ns: int) -> InstrumentSnapshot:
        """Copy of every series; sweeps idle ones first."""
        with self._lock:
            self._sweep_locked(now_ns)
            points = tuple(
                PointSnapshot(key[0], self._attributes(key), state[0], state[2])  # type: ignore[arg-type]
                for key, state in self._series.items()
            )
        return InstrumentSnapshot(self.name, self.kind, self.unit, self.description, (), points, now_ns)


class Counter(_Scalar):
    """A monotonic sum. Values below zero are ignored (counted nowhere: callers never send them)."""

    kind = "counter"

    def add(self, key: SeriesKey, value: float, now_ns: int) -> None:
        """Add ``value`` to the series ``key``."""
        with self._lock:
            state = self._series.get(key)
            if state is None:
                state = self._state_locked(key, now_ns)
            state[1] = now_ns
            state[2] += value  # type: ignore[operator]
        if self._folded:
            self._report_folded(now_ns)

    def add_many(self, items: Iterable[tuple[SeriesKey, float]], now_ns: int) -> None:
        """Add several (key, value) pairs under one lock acquisition."""
        series = self._series
        with self._lock:
            for key, value in items:
                state = series.get(key)
                if state is None:
                    state = self._state_locked(key, now_ns)
                state[1] = now_ns
                state[2] += value  # type: ignore[operator]
        if self._folded:
            self._report_folded(now_ns)


class Gauge(_Scalar):
    """The last value set per series."""

    kind = "gauge"

    def set(self, key: SeriesKey, value: float, now_ns: int) -> None:
        """Set the series ``key`` to ``value``."""
        with self._lock:
            state = self._series.get(key)
            if state is None:
                state = self._state_locked(key, now_ns)
            state[1] = now_ns
            state[2] = value
        if self._folded:
            self._report_folded(now_ns)


class Histogram(_Instrument):
    """Explicit-bucket histogram; bucket ``i`` counts values in ``(bounds[i-1], bounds[i]]`` (OTLP and ``le``)."""

    kind = "histogram"

    def __init__(
        self,
        store: MetricStore,
        name: str,
        label_names: Sequence[str],
        unit: str,
        description: str,
        cardinality_limit: int,
        expiry_s: float,
        buckets: Sequence[float],
    ) -> None:
        super().__init__(store, name, label_names, unit, description, cardinality_limit, expiry_s)
        self.buckets = tuple(float(b) for b in buckets)
        if list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"{name}: bucket bounds must be strictly increasing, got {list(buckets)}")

    def _new_state(self, now_ns: int) -> list[object]:
        # start, last, count, sum, min, max, bucket counts
        return [now_ns, now_ns, 0, 0.0, float("inf"), float("-inf"), [0] * (len(self.buckets) + 1)]

    def record(self, key: SeriesKey, value: float, now_ns: int) -> None:
        """Record one measurement."""
        self.record_many(((key, value),), now_ns)

    def record_many(self, items: Iterable[tuple[SeriesKey, float]], now_ns: int) -> None:
        """Record several (key, value) pairs under one lock acquisition."""
        series = self._series
        bounds = self.buckets
        with self._lock:
            for key, value in items:
                state = series.get(key)
                if state is None:
                    state = self._state_locked(key, now_ns)
                state[1] = now_ns
                state[2] += 1  # type: ignore[operator]
                state[3] += value  # type: ignore[operator]
                if value < state[4]:  # type: ignore[operator]
                    state[4] = value
                if value > state[5]:  # type: ignore[operator]
                    state[5] = value
                state[6][bisect_left(bounds, value)] += 1  # type: ignore[index]
        if self._folded:
            self._report_folded(now_ns)

    def snapshot(self, now_ns: int) -> InstrumentSnapshot:
        """Copy of every series; sweeps idle ones first."""
        with self._lock:
            self._sweep_locked(now_ns)
            points = tuple(
                PointSnapshot(
                    key[0],
                    self._attributes(key),
                    state[0],  # type: ignore[arg-type]
                    0.0,
                    count=state[2],  # type: ignore[arg-type]
                    total=state[3],  # type: ignore[arg-type]
                    minimum=state[4],  # type: ignore[arg-type]
                    maximum=state[5],  # type: ignore[arg-type]
                    bucket_counts=tuple(state[6]),  # type: ignore[arg-type]
                )
                for key, state in self._series.items()
            )
        return InstrumentSnapshot(
            self.name, self.kind, self.unit, self.description, self.buckets, points, now_ns
        )


Instrument = Counter | Gauge | Histogram
_I = TypeVar("_I", Counter, Gauge, Histogram)
_S = TypeVar("_S", Counter, Gauge)


class MetricStore:
    """Instruments by name, the resources their series belong to, and the overflow counter.

    ``instance_id`` is added to every exported point as ``otel_llm.instance.id`` so that several
    collector workers never write the same series.
    """

    def __init__(self, instance_id: str = "") -> None:
        self.instance_id = instance_id
        self.created_ns = time.time_ns()
        self._lock = threading.Lock()
        self._instruments: dict[str, Instrument] = {}
        # resource key -> (attribute name, value) pairs exported as the OTLP resource
        self._resources: dict[ResourceKey, tuple[tuple[str, str], ...]] = {(): ()}
        self._overflow = Counter(
            self,
            m.OTEL_LLM_METRIC_OVERFLOW,
            (attrs.OTEL_LLM_METRIC_NAME,),
            m.OTEL_LLM_METRIC_OVERFLOW_UNIT,
            m.OTEL_LLM_METRIC_OVERFLOW_DESCRIPTION,
            cardinality_limit=10_000,
            expiry_s=0.0,
        )

    # -- instruments -------------------------------------------------------------------------------

    def _get(self, name: str, kind: type[_I], *args: object) -> _I:
        found = self._instruments.get(name)
        if found is None:
            with self._lock:
                found = self._instruments.get(name)
                if found is None:
                    found = self._instruments[name] = kind(self, name, *args)  # type: ignore[arg-type]
        if not isinstance(found, kind):
            raise ValueError(f"metric {name!r} is already a {found.kind}, not a {kind.kind}")
        return found

    def _scalar(
        self,
        kind: type[_S],
        name: str,
        label_names: Sequence[str],
        cardinality_limit: int,
        expiry_s: float,
    ) -> _S:
        """A counter or gauge, with unit and description from the conventions."""
        spec = m.METRICS.get(name)
        return self._get(
            name,
            kind,
            label_names,
            spec.unit if spec else "1",
            spec.description if spec else "",
            cardinality_limit,
            expiry_s,
        )

    def counter(
        self,
        name: str,
        label_names: Sequence[str],
        *,
        cardinality_limit: int = _DEFAULT_LIMIT,
        expiry_s: float = _DEFAULT_EXPIRY_S,
    ) -> Counter:
        """The counter ``name``, created on first use with unit and description from the conventions."""
        return self._scalar(Counter, name, label_names, cardinality_limit, expiry_s)

    def gauge(
        self,
        name: str,
        label_names: Sequence[str],
        *,
        cardinality_limit: int = _DEFAULT_LIMIT,
        expiry_s: float = _DEFAULT_EXPIRY_S,
    ) -> Gauge:
        """The gauge ``name``, created on first use."""
        return self._scalar(Gauge, name, label_names, cardinality_limit, expiry_s)

    def histogram(
        self,
        name: str,
        label_names: Sequence[str],
        *,
        buckets: Sequence[float] | None = None,
        unit: str | None = None,
        description: str | None = None,
        cardinality_limit: int = _DEFAULT_LIMIT,
        expiry_s: float = _DEFAULT_EXPIRY_S,
    ) -> Histogram:
        """The histogram ``name``; buckets, unit and description default to the conventions' advice."""
        spec = m.METRICS.get(name)
        bounds = buckets if buckets is not None else (spec.buckets if spec and spec.buckets else None)
        if bounds is None:
            raise ValueError(
                f"histogram {name!r}: no bucket bounds given and none advised by the conventions"
            )
        return self._get(
            name,
            Histogram,
            label_names,
            unit if unit is not None else (spec.unit if spec else "1"),
            description if description is not None else (spec.description if spec else ""),
            cardinality_limit,
            expiry_s,
            bounds,
        )

    def instruments(self) -> list[Instrument]:
        """Every instrument, in creation order."""
        return list(self._instruments.values())

    # -- resources ---------------------------------------------------------------------------------

    def register_resource(self, key: ResourceKey, attributes: Sequence[tuple[str, str]]) -> None:
        """Remember the resource attributes exported for ``key`` (first registration wins)."""
        if key not in self._resources:
            with self._lock:
                self._resources.setdefault(key, tuple(attributes))

    def resource_attributes(self, key: ResourceKey) -> tuple[tuple[str, str], ...]:
        """The attributes registered for ``key``; empty for the overflow series."""
        return self._resources.get(key, ())

    def _overflowed(self, name: str, points: int, now_ns: int) -> None:
        self._overflow.add(((), (name,)), float(points), now_ns)

    # -- reading -----------------------------------------------------------------------------------

    def snapshot(self, now_ns: int | None = None) -> list[InstrumentSnapshot]:
        """Every instrument's series, idle ones swept first; instruments with no series are left out."""
        now = time.time_ns() if now_ns is None else now_ns
        out = [instrument.snapshot(now) for instrument in self.instruments()]
        overflow = self._overflow.snapshot(now)
        if overflow.points:
            out.append(overflow)
        live = {point.resource for snap in out for point in snap.points}
        with self._lock:
            for key in [key for key in self._resources if key and key not in live]:
                del self._resources[key]
        return [snap for snap in out if snap.points]

    def series_count(self) -> int:
        """Series held over all instruments (overflow series included)."""
        return sum(len(instrument) for instrument in self.instruments())
