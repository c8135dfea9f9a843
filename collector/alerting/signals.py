"""Signals: small windowed aggregates per group, computed from the spans the processor sees.

Time is data time. Every observation carries its own timestamp (the span's end time); the
aggregator keeps one :class:`Bucket` per evaluation interval and group, aligned to multiples of the
interval since the epoch, and a rule reads the last ``window / interval`` closed buckets. Buckets are
mergeable (counts, sums and fixed log-spaced histograms), so a 5-minute p95 is a merge of five
1-minute buckets, never a re-sort of samples.

Signals
=======
==========================  =================================================  ========================
name                        value over the window                              samples (``n``)
==========================  =================================================  ========================
``requests``                spans                                              spans
``requests_per_minute``     spans per minute                                   spans
``error_rate``              share of spans with an error                       spans
``error_rate_4xx``          share with a client error (4xx, rate limit, ...)   spans
``error_rate_5xx``          share with a server error (5xx, overloaded, ...)   spans
``error_rate_other``        share with any other error (timeouts, ...)         spans
``error_rate:<error.type>`` share with exactly that ``error.type``             spans
``latency_p50_s`` (p95,p99) quantile of span duration, seconds                 spans
``ttft_p50_s`` (p95, p99)   quantile of time to first chunk, seconds           streamed spans
``tokens_per_request``      mean input + output tokens                         spans reporting tokens
``tokens_per_minute``       input + output tokens per minute                   spans
``cost_per_request``        mean cost                                          priced spans
``cost_per_minute``         cost per minute                                    spans
``quality_score``           mean evaluation score (0..1)                       scores
``thumbs_down_rate``        share of thumbs feedback that is down              thumbs feedback
``drift_state``             1 while drift is detected (from the metric store)  1 when known
==========================  =================================================  ========================

Quality and feedback come from ``gen_ai.evaluation.result`` span events (or the
``gen_ai.evaluation.score.value`` attribute) and ``otel_llm.feedback.*`` attributes on the spans
this processor sees; a :class:`StoreReader` fills them, and ``drift_state``, from the derived-metric
store when the spans do not carry them.

Thread safety: none; the processor holds its lock around every call.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = [
    "SIGNALS",
    "Bucket",
    "GroupKey",
    "Observation",
    "SignalAggregator",
    "SignalValue",
    "StoreReader",
    "error_class",
    "is_signal",
]

GroupKey = tuple[str, ...]

_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
SIGNALS: tuple[str, ...] = (
    "requests",
    "requests_per_minute",
    "error_rate",
    "error_rate_4xx",
    "error_rate_5xx",
    "error_rate_other",
    *(f"latency_{q}_s" for q in _QUANTILES),
    *(f"ttft_{q}_s" for q in _QUANTILES),
    "tokens_per_request",
    "tokens_per_minute",
    "cost_per_request",
    "cost_per_minute",
    "quality_score",
    "thumbs_down_rate",
    "drift_state",
)
_STORE_SIGNALS = frozenset({"quality_score", "thumbs_down_rate", "drift_state"})

# Histogram: 20 log-spaced bins per decade from 1 ms to 10^4 s (about 6% wide; quantiles interpolate
# inside a bin), plus an underflow and an overflow bin.
_BINS_PER_DECADE = 20
_LOW_EXP = -3
_HIGH_EXP = 4
_NBINS = (_HIGH_EXP - _LOW_EXP) * _BINS_PER_DECADE + 2


def is_signal(name: str) -> bool:
    """Whether ``name`` is a known signal (``error_rate:<type>`` included)."""
    if name.startswith("error_rate:"):
        return len(name) > len("error_rate:")
    return name in SIGNALS


_CLIENT_ERRORS = (
    "badrequest",
    "authentication",
    "permissiondenied",
    "notfound",
    "conflict",
    "unprocessable",
    "ratelimit",
    "invalid_request",
    "context_length",
)
_SERVER_ERRORS = ("internalserver", "serviceunavailable", "overloaded", "badgateway", "api_error")


def error_class(error_type: str) -> str:
    """``4xx``, ``5xx`` or ``other`` for an ``error.type`` value (an HTTP status or an exception name)."""
    text = error_type.strip()
    if len(text) == 3 and text.isdigit():
        return {"4": "4xx", "5": "5xx"}.get(text[0], "other")
    folded = text.lower().replace("_", "").replace(".", "")
    if any(word.replace("_", "") in folded for word in _CLIENT_ERRORS):
        return "4xx"
    if any(word.replace("_", "") in folded for word in _SERVER_ERRORS):
        return "5xx"
    return "other"


@dataclass(slots=True)
class Observation:
    """What one span contributes; ``None`` where the span did not report it."""

    duration_s: float
    is_error: bool = False
    error_type: str = ""
    ttft_s: float | None = None
    tokens: int | None = None
    cost: float | None = None
    quality: tuple[float, ...] = ()
    thumbs: tuple[float, ...] = ()


def _bin(value: float) -> int:
    if value <= 0:
        return 0
    index = int((math.log10(value) - _LOW_EXP) * _BINS_PER_DECADE) + 1
    return min(max(index, 0), _NBINS - 1)


def _bin_edges(index: int) -> tuple[float, float]:
    if index == 0:
        return 0.0, 10.0**_LOW_EXP
    if index == _NBINS - 1:
        high = 10.0**_HIGH_EXP
        return high, high
    low = 10.0 ** (_LOW_EXP + (index - 1) / _BINS_PER_DECADE)
    return low, low * 10.0 ** (1 / _BINS_PER_DECADE)


def _quantile(hist: np.ndarray[Any, Any], total: int, q: float) -> float:
    """Quantile of a log-bin histogram, interpolated geometrically inside the bin."""
    rank = q * total
    cumulative = np.cumsum(hist)
    index = min(int(np.searchsorted(cumulative, rank, side="left")), _NBINS - 1)
    while hist[index] == 0 and index < _NBINS - 1:  # rank 0 lands before the first non-empty bin
        index += 1
    count = int(hist[index])
    seen = int(cumulative[index]) - count
    low, high = _bin_edges(index)
    fraction = (rank - seen) / count if count else 1.0
    if low <= 0:
        return high * fraction
    return float(low * (high / low) ** fraction)


@dataclass(slots=True)
class Bucket:
    """Aggregates of one group over one evaluation interval; mergeable."""

    count: int = 0
    errors: int = 0
    error_classes: Counter[str] = field(default_factory=Counter)
    error_types: Counter[str] = field(default_factory=Counter)
    latency: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(_NBINS, dtype=np.int64))
    ttft: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(_NBINS, dtype=np.int64))
    ttft_n: int = 0
    tokens_sum: float = 0.0
    tokens_n: int = 0
    cost_sum: float = 0.0
    cost_n: int = 0
    quality_sum: float = 0.0
    quality_n: int = 0
    thumbs_n: int = 0
    thumbs_down: int = 0

    def add(self, obs: Observation) -> None:
        """Count one observation in."""
        self.count += 1
        self.latency[_bin(obs.duration_s)] += 1
        if obs.is_error:
            self.errors += 1
            self.error_classes[error_class(obs.error_type)] += 1
            if obs.error_type:
                self.error_types[obs.error_type] += 1
        if obs.ttft_s is not None:
            self.ttft[_bin(obs.ttft_s)] += 1
            self.ttft_n += 1
        if obs.tokens is not None:
            self.tokens_sum += obs.tokens
            self.tokens_n += 1
        if obs.cost is not None:
            self.cost_sum += obs.cost
            self.cost_n += 1
        for score in obs.quality:
            self.quality_sum += score
            self.quality_n += 1
        for thumb in obs.thumbs:
            self.thumbs_n += 1
            self.thumbs_down += thumb < 0.5

    def merge(self, other: Bucket) -> None:
        """Add ``other`` into this bucket."""
        self.count += other.count
        self.errors += other.errors
        if other.errors:
            self.error_classes.update(other.error_classes)
            self.error_types.update(other.error_types)
        self.latency += other.latency
        self.ttft += other.ttft
        self.ttft_n += other.ttft_n
        self.tokens_sum += other.tokens_sum
        self.tokens_n += other.tokens_n
        self.cost_sum += other.cost_sum
        self.cost_n += other.cost_n
        self.quality_sum += other.quality_sum
        self.quality_n += other.quality_n
        self.thumbs_n += other.thumbs_n
        self.thumbs_down += other.thumbs_down


@dataclass(frozen=True, slots=True)
class SignalValue:
    """A signal's value over a window and the number of samples behind it."""

    value: float
    n: int


def compute(signal: str, bucket: Bucket, window_s: float) -> SignalValue | None:
    """The value of ``signal`` over a merged window; ``None`` when the window has nothing for it."""
    minutes = window_s / 60.0
    count = bucket.count
    if signal == "requests":
        return SignalValue(float(count), count)
    if signal == "requests_per_minute":
        return SignalValue(count / minutes, count)
    if signal.startswith("error_rate"):
        if not count:
            return None
        if signal == "error_rate":
            return SignalValue(bucket.errors / count, count)
        if signal.startswith("error_rate:"):
            return SignalValue(bucket.error_types[signal.partition(":")[2]] / count, count)
        return SignalValue(bucket.error_classes[signal.removeprefix("error_rate_")] / count, count)
    if signal.startswith(("latency_", "ttft_")):
        kind, quantile, _ = signal.split("_")
        hist, n = (bucket.latency, count) if kind == "latency" else (bucket.ttft, bucket.ttft_n)
        if not n:
            return None
        return SignalValue(_quantile(hist, n, _QUANTILES[quantile]), n)
    if signal == "tokens_per_request":
        return SignalValue(bucket.tokens_sum / bucket.tokens_n, bucket.tokens_n) if bucket.tokens_n else None
    if signal == "tokens_per_minute":
        return SignalValue(bucket.tokens_sum / minutes, count)
    if signal == "cost_per_request":
        return SignalValue(bucket.cost_sum / bucket.cost_n, bucket.cost_n) if bucket.cost_n else None
    if signal == "cost_per_minute":
        return SignalValue(bucket.cost_sum / minutes, count)
    if signal == "quality_score":
        return (
            SignalValue(bucket.quality_sum / bucket.quality_n, bucket.quality_n) if bucket.quality_n else None
        )
    if signal == "thumbs_down_rate":
        return SignalValue(bucket.thumbs_down / bucket.thumbs_n, bucket.thumbs_n) if bucket.thumbs_n else None
    return None


class StoreReader(Protocol):
    """Reads a signal the spans do not carry (quality, feedback, drift) from the derived-metric store.

    ``at`` is the end of the window being evaluated; a reader may cache per ``at``.
    """

    def read(self, signal: str, group: Mapping[str, str], at: float) -> SignalValue | None: ...


@dataclass(slots=True)
class _Group:
    buckets: deque[tuple[float, Bucket]]
    last_seen: float


class SignalAggregator:
    """Per-group ring of per-interval buckets, closed as data time passes.

    ``observe`` adds to the open bucket of the observation's interval; an observation for an interval
    that is already closed (late data) goes into the open bucket and is counted in ``late``. ``close``
    moves time forward to an interval boundary and returns the start of every interval it closed.
    """

    def __init__(self, interval_s: float, keep_intervals: int, max_groups: int = 1000) -> None:
        if interval_s <= 0 or keep_intervals < 1:
            raise ValueError("interval_s and keep_intervals must be positive")
        self.interval_s = interval_s
        self.keep = keep_intervals
        self.max_groups = max_groups
        self.groups: dict[GroupKey, _Group] = {}
        self.open_start: float | None = None
        self.late = 0
        self.overflow = 0

    def boundary(self, t: float) -> float:
        """Start of the interval containing ``t``."""
        return math.floor(t / self.interval_s) * self.interval_s

    def observe(self, t: float, group: GroupKey, obs: Observation) -> None:
        """Add one observation; call :meth:`close` first when ``t`` is past the open interval."""
        start = self.boundary(t)
        if self.open_start is None:
            self.open_start = start
        elif start < self.open_start:
            self.late += 1
            start = self.open_start
        state = self.groups.get(group)
        if state is None:
            if len(self.groups) >= self.max_groups:
                self.overflow += 1
                return
            state = self.groups[group] = _Group(deque(), t)
        state.last_seen = max(state.last_seen, t)
        buckets = state.buckets
        if not buckets or buckets[-1][0] != self.open_start:
            buckets.append((self.open_start, Bucket()))
            while len(buckets) > self.keep + 1:
                buckets.popleft()
        buckets[-1][1].add(obs)

    def due(self, t: float) -> list[float]:
        """Ends of the intervals that time ``t`` closes (oldest first); advances the open interval."""
        start = self.boundary(t)
        if self.open_start is None:
            self.open_start = start
            return []
        ends: list[float] = []
        while self.open_start < start:
            self.open_start += self.interval_s
            ends.append(self.open_start)
        return ends

    def window(self, group: GroupKey, end: float, window_s: float) -> Bucket | None:
        """The merged buckets of ``group`` in ``[end - window_s, end)``; ``None`` when the group is unknown."""
        state = self.groups.get(group)
        if state is None:
            return None
        merged = Bucket()
        begin = end - window_s - 1e-9
        for start, bucket in state.buckets:
            if begin <= start < end:
                merged.merge(bucket)
        return merged

    def rolled_up(
        self,
        keys: Iterable[GroupKey],
        positions: Sequence[int],
        end: float,
        window_s: float,
        *,
        skip_empty: bool = False,
    ) -> dict[GroupKey, Bucket]:
        """The windows of ``keys`` (see :meth:`window`) merged by the key parts at ``positions``.

        Unknown groups are left out, and with ``skip_empty`` groups without a sample in the window.
        """
        out: dict[GroupKey, Bucket] = {}
        for key in keys:
            bucket = self.window(key, end, window_s)
            if bucket is None or (skip_empty and bucket.count == 0):
                continue
            sub = tuple(key[i] for i in positions)
            if sub in out:
                out[sub].merge(bucket)
            else:
                out[sub] = bucket
        return out

    def expire(self, before: float) -> list[GroupKey]:
        """Forget groups not seen since ``before``; returns them."""
        gone = [key for key, state in self.groups.items() if state.last_seen < before]
        for key in gone:
            del self.groups[key]
        return gone

    def group_keys(self) -> Iterable[GroupKey]:
        """Known groups."""
        return list(self.groups)


def needs_store(signal: str) -> bool:
    """Whether ``signal`` may come from the derived-metric store."""
    return signal in _STORE_SIGNALS
