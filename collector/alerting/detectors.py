"""Detectors: small, pure scorers of one metric series per group, each with a typed config.

A detector sees one sample at a time, ``(t, value)`` in data time, and answers with an
:class:`Assessment`: whether the sample breaches the fire condition, whether it satisfies the (looser)
resolve condition, whether it is critical, and the score it judged on. Hysteresis lives here (fire and
resolve thresholds differ); durations, cooldown and minimum samples live in the rule state machine
(:mod:`collector.alerting.engine`), so every detector gets them alike.

Baselines learn only from samples that do not breach, so a spike or a step does not teach the
detector that it is normal and the alert resolves when the series comes back. A permanent change of
level therefore keeps firing until someone changes the rule (see ``docs/alerting.md``).

State is a small mutable object per group made by ``new_state()``; the detector object itself is
immutable and shared by every group of a rule. Nothing reads a clock: all time comes from ``t``.

=============  ===========================================================  =====================
type           fires when                                                   score
=============  ===========================================================  =====================
``threshold``  value is above ``above`` (or below ``below``)                the value
``ewma``       value is ``k`` EWMA standard deviations off the EWMA mean    deviations (sigma)
``zscore``     value is ``k`` standard deviations off a trailing window     z
``ratio``      value is ``above`` times the trailing moving average         value / average
``cusum``      the cumulative sum of deviations passes ``h``                the CUSUM statistic
=============  ===========================================================  =====================
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

import numpy as np
from pydantic import Field

from collector.component import ComponentConfig
from collector.durations import Duration

__all__ = [
    "Assessment",
    "CusumConfig",
    "CusumDetector",
    "Detector",
    "DetectorConfig",
    "EwmaConfig",
    "EwmaDetector",
    "RatioConfig",
    "RatioDetector",
    "ThresholdConfig",
    "ThresholdDetector",
    "ZScoreConfig",
    "ZScoreDetector",
    "build_detector",
    "hour_of_week",
]

Direction = Literal["up", "down", "both"]


@dataclass(frozen=True, slots=True)
class Assessment:
    """A detector's verdict on one sample.

    ``ready`` is false while the detector is still learning (warm-up, short baseline); the state
    machine then treats the sample as no data. ``breach`` is the fire condition, ``clear`` the resolve
    condition; a sample can be neither (inside the hysteresis band). ``baseline`` is what the value
    was compared against, for annotations.
    """

    ready: bool
    breach: bool = False
    clear: bool = True
    critical: bool = False
    score: float = math.nan
    baseline: float = math.nan


_NOT_READY = Assessment(ready=False)


class _Config(ComponentConfig):
    """Detector configs share the component configs' rules: frozen, unknown keys rejected."""


class ThresholdConfig(_Config):
    """``type: threshold``: a fixed bound; combine with the rule's ``for`` for "held for 5m"."""

    type: Literal["threshold"]
    above: float | None = Field(None, description="Fire when the value is greater than this.")
    below: float | None = Field(None, description="Fire when the value is less than this.")
    resolve: float | None = Field(
        None,
        description="Resolve when the value is back at or under this (over it with `below`); "
        "default: the fire bound, i.e. no hysteresis.",
    )
    critical: float | None = Field(
        None, description="Critical instead of the rule's severity beyond this bound; default: none."
    )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if (self.above is None) == (self.below is None):
            out.append(("", "expected exactly one of `above` or `below`"))
            return out
        if self.above is not None:
            if self.resolve is not None and self.resolve > self.above:
                out.append(("resolve", f"expected a value <= above ({self.above:g}), got {self.resolve:g}"))
            if self.critical is not None and self.critical < self.above:
                out.append(("critical", f"expected a value >= above ({self.above:g}), got {self.critical:g}"))
        if self.below is not None:
            if self.resolve is not None and self.resolve < self.below:
                out.append(("resolve", f"expected a value >= below ({self.below:g}), got {self.resolve:g}"))
            if self.critical is not None and self.critical > self.below:
                out.append(("critical", f"expected a value <= below ({self.below:g}), got {self.critical:g}"))
        return out


class EwmaConfig(_Config):
    """``type: ewma``: an exponentially weighted control chart (mean and variance both smoothed)."""

    type: Literal["ewma"]
    alpha: float = Field(0.1, gt=0, le=1, description="Smoothing weight of the newest sample.")
    k: float = Field(4.0, gt=0, description="Fire at this many standard deviations from the mean.")
    resolve_k: float | None = Field(None, ge=0, description="Resolve inside this many; default k/2.")
    critical_k: float | None = Field(None, gt=0, description="Critical beyond this many; default none.")
    warmup: int = Field(30, ge=2, description="Samples learned before the first verdict.")
    direction: Direction = Field("up", description="`up`, `down` or `both`.")
    min_sigma_ratio: float = Field(
        0.02,
        ge=0,
        description="Floor of the standard deviation as a share of |mean|, so a flat series does not "
        "fire on rounding noise.",
    )

    log: bool = Field(
        False, description="Judge log(value): for multiplicative noise such as latency quantiles and cost."
    )

    clip_k: float = Field(
        3.0, gt=0, description="Learned samples are winsorised to this many sigma (robust baseline)."
    )

    def problems(self) -> list[tuple[str, str]]:
        return _k_problems(self.k, self.resolve_k, self.critical_k)


class ZScoreConfig(_Config):
    """``type: zscore``: mean and standard deviation over a trailing window, optionally per hour slot."""

    type: Literal["zscore"]
    window: Duration = Field(7 * 86400.0, gt=0, description="Trailing baseline window (`7d`).")
    seasonality: Literal["none", "hour_of_day", "hour_of_week"] = Field(
        "none",
        description="Compare with the same hour of the day or of the week only; needs that much history.",
    )
    k: float = Field(4.0, gt=0, description="Fire at this |z|.")
    resolve_k: float | None = Field(None, ge=0, description="Resolve inside this |z|; default k/2.")
    critical_k: float | None = Field(None, gt=0, description="Critical beyond this |z|; default none.")
    min_baseline: int = Field(30, ge=2, description="Baseline samples (in the slot) before a verdict.")
    direction: Direction = Field("up", description="`up`, `down` or `both`.")
    min_sigma_ratio: float = Field(0.02, ge=0, description="Floor of sigma as a share of |mean|.")

    log: bool = Field(
        False, description="Judge log(value): for multiplicative noise such as latency quantiles and cost."
    )

    clip_k: float = Field(
        3.0, gt=0, description="Learned samples are winsorised to this many sigma (robust baseline)."
    )

    def problems(self) -> list[tuple[str, str]]:
        return _k_problems(self.k, self.resolve_k, self.critical_k)


class RatioConfig(_Config):
    """``type: ratio``: the value against its trailing moving average (`> 3x`)."""

    type: Literal["ratio"]
    window: Duration = Field(3600.0, gt=0, description="Trailing moving-average window (`1h`).")
    above: float = Field(3.0, gt=1, description="Fire when value / average exceeds this.")
    resolve: float | None = Field(
        None, gt=0, description="Resolve at or under this ratio; default halfway between 1 and `above`."
    )
    critical: float | None = Field(None, gt=1, description="Critical beyond this ratio; default none.")
    min_baseline: int = Field(10, ge=1, description="Samples in the window before a verdict.")
    min_average: float = Field(
        0.0, ge=0, description="No verdict while the average is at or below this (avoids x/0 noise)."
    )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.resolve is not None and self.resolve > self.above:
            out.append(("resolve", f"expected a value <= above ({self.above:g}), got {self.resolve:g}"))
        if self.critical is not None and self.critical < self.above:
            out.append(("critical", f"expected a value >= above ({self.above:g}), got {self.critical:g}"))
        return out


class CusumConfig(_Config):
    """``type: cusum``: two-sided tabular CUSUM in sigma units, for small persistent shifts."""

    type: Literal["cusum"]
    k: float = Field(0.5, ge=0, description="Slack per sample, in sigma (half the shift to detect).")
    h: float = Field(5.0, gt=0, description="Fire when the cumulative sum passes this, in sigma.")
    resolve_h: float | None = Field(None, ge=0, description="Resolve at or under this; default h/4.")
    critical_h: float | None = Field(None, gt=0, description="Critical beyond this; default none.")
    warmup: int = Field(30, ge=2, description="Samples learned before the first verdict.")
    baseline_alpha: float = Field(
        0.01, gt=0, le=1, description="EWMA weight that lets the in-control mean follow slow cycles."
    )
    direction: Direction = Field("up", description="`up`, `down` or `both`.")
    min_sigma_ratio: float = Field(0.02, ge=0, description="Floor of sigma as a share of |mean|.")

    log: bool = Field(
        False, description="Judge log(value): for multiplicative noise such as latency quantiles and cost."
    )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.resolve_h is not None and self.resolve_h > self.h:
            out.append(("resolve_h", f"expected a value <= h ({self.h:g}), got {self.resolve_h:g}"))
        if self.critical_h is not None and self.critical_h < self.h:
            out.append(("critical_h", f"expected a value >= h ({self.h:g}), got {self.critical_h:g}"))
        return out


def _k_problems(k: float, resolve_k: float | None, critical_k: float | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if resolve_k is not None and resolve_k > k:
        out.append(("resolve_k", f"expected a value <= k ({k:g}), got {resolve_k:g}"))
    if critical_k is not None and critical_k < k:
        out.append(("critical_k", f"expected a value >= k ({k:g}), got {critical_k:g}"))
    return out


DetectorConfig = Annotated[
    ThresholdConfig | EwmaConfig | ZScoreConfig | RatioConfig | CusumConfig, Field(discriminator="type")
]


class Detector(Protocol):
    """What the rule state machine needs from a detector."""

    def new_state(self) -> Any: ...

    def step(self, state: Any, t: float, value: float) -> Assessment: ...


def _directional(deviation: float, direction: Direction) -> float:
    """The part of a signed deviation that counts for ``direction`` (0 when it points the other way)."""
    if direction == "up":
        return deviation
    if direction == "down":
        return -deviation
    return abs(deviation)


def _sigma_floor(sigma: float, mean: float, ratio: float) -> float:
    return max(sigma, abs(mean) * ratio, 1e-12)


class ThresholdDetector:
    """A fixed bound with optional hysteresis; stateless."""

    def __init__(self, config: ThresholdConfig) -> None:
        self.config = config
        self._up = config.above is not None
        self._fire = config.above if config.above is not None else config.below
        assert self._fire is not None
        self._resolve = config.resolve if config.resolve is not None else self._fire

    def new_state(self) -> None:
        return None

    def step(self, state: Any, t: float, value: float) -> Assessment:
        c = self.config
        fire, resolve = self._fire, self._resolve
        assert fire is not None
        if self._up:
            breach, clear = value > fire, value <= resolve
            critical = c.critical is not None and value > c.critical
        else:
            breach, clear = value < fire, value >= resolve
            critical = c.critical is not None and value < c.critical
        return Assessment(True, breach, clear, critical, value, fire)


@dataclass(slots=True)
class _Moments:
    """A sample count with a running mean and variance, learnt by :func:`_welford` and :func:`_ewma`."""

    n: int = 0
    mean: float = 0.0
    var: float = 0.0


@dataclass(slots=True)
class _EwmaState(_Moments):
    alarm: bool = False


class EwmaDetector:
    """EWMA control chart: deviation of the sample from the smoothed mean, in smoothed sigmas."""

    def __init__(self, config: EwmaConfig) -> None:
        self.config = config
        self._resolve_k = config.resolve_k if config.resolve_k is not None else config.k / 2

    def new_state(self) -> _EwmaState:
        return _EwmaState()

    def step(self, state: _EwmaState, t: float, value: float) -> Assessment:
        c = self.config
        if c.log:
            if value <= 0:
                return _NOT_READY
            value = math.log(value)
        if state.n < c.warmup:
            _ewma_learn(state, value, c.alpha if state.n else 1.0, warm=state.n < c.warmup)
            return _NOT_READY
        sigma = _sigma_floor(math.sqrt(state.var), state.mean, c.min_sigma_ratio)
        score = _directional((value - state.mean) / sigma, c.direction)
        breach = score > c.k
        clear = score <= self._resolve_k
        critical = c.critical_k is not None and score > c.critical_k
        baseline = math.exp(state.mean) if c.log else state.mean
        state.alarm = breach or (state.alarm and not clear)
        if not state.alarm:
            # Learn winsorised samples: outliers the direction ignores and the first samples of a
            # step then barely move the mean or inflate the variance.
            clipped = min(max(value, state.mean - c.clip_k * sigma), state.mean + c.clip_k * sigma)
            _ewma_learn(state, clipped, c.alpha, warm=False)
        return Assessment(True, breach, clear, critical, score, baseline)


def _ewma_learn(state: _EwmaState, value: float, alpha: float, *, warm: bool) -> None:
    if warm:
        # During warm-up use the running mean and variance (Welford): an EWMA started from one sample
        # would underestimate sigma and fire on the first ordinary sample after warm-up.
        _welford(state, value)
        return
    state.n += 1
    _ewma(state, value, alpha)


def _welford(state: _Moments, value: float) -> None:
    """Count ``value`` into the running (Welford) mean and variance."""
    state.n += 1
    delta = value - state.mean
    state.mean += delta / state.n
    state.var += (delta * (value - state.mean) - state.var) / state.n


def _ewma(state: _Moments, value: float, alpha: float) -> None:
    """Move the mean and variance towards ``value`` by ``alpha``; the count is the caller's."""
    delta = value - state.mean
    state.mean += alpha * delta
    state.var = (1 - alpha) * (state.var + alpha * delta * delta)


def hour_of_week(t: float) -> int:
    """0..167, Monday 00:00 UTC = 0 (the Unix epoch fell on a Thursday)."""
    return int((t // 3600 + 72) % 168)


@dataclass(slots=True)
class _Window:
    """Samples of a trailing time window with running sums, for O(1) mean and variance."""

    times: deque[float] = field(default_factory=deque)
    values: deque[float] = field(default_factory=deque)
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, t: float, value: float) -> None:
        self.times.append(t)
        self.values.append(value)
        self.total += value
        self.total_sq += value * value

    def expire(self, oldest: float) -> None:
        while self.times and self.times[0] < oldest:
            self.times.popleft()
            old = self.values.popleft()
            self.total -= old
            self.total_sq -= old * old
        if not self.times:
            self.total = self.total_sq = 0.0

    def mean_std(self) -> tuple[float, float]:
        n = len(self.values)
        mean = self.total / n
        var = max(0.0, self.total_sq / n - mean * mean)
        if n > 1:
            var *= n / (n - 1)
        return mean, math.sqrt(var)


@dataclass(slots=True)
class _ZState:
    slots: dict[int, _Window] = field(default_factory=dict)
    alarm: bool = False


class ZScoreDetector:
    """z of the sample against a trailing window (all samples, or the same hour slot only)."""

    def __init__(self, config: ZScoreConfig) -> None:
        self.config = config
        self._resolve_k = config.resolve_k if config.resolve_k is not None else config.k / 2

    def new_state(self) -> _ZState:
        return _ZState()

    def _slot(self, t: float) -> int:
        if self.config.seasonality == "hour_of_week":
            return hour_of_week(t)
        if self.config.seasonality == "hour_of_day":
            return int((t // 3600) % 24)
        return 0

    def step(self, state: _ZState, t: float, value: float) -> Assessment:
        c = self.config
        if c.log:
            if value <= 0:
                return _NOT_READY
            value = math.log(value)
        window = state.slots.setdefault(self._slot(t), _Window())
        window.expire(t - c.window)
        if len(window.values) < c.min_baseline:
            window.add(t, value)
            return _NOT_READY
        mean, std = window.mean_std()
        sigma = _sigma_floor(std, mean, c.min_sigma_ratio)
        score = _directional((value - mean) / sigma, c.direction)
        breach = score > c.k
        clear = score <= self._resolve_k
        critical = c.critical_k is not None and score > c.critical_k
        state.alarm = breach or (state.alarm and not clear)
        if not state.alarm:
            window.add(t, min(max(value, mean - c.clip_k * sigma), mean + c.clip_k * sigma))
        return Assessment(True, breach, clear, critical, score, math.exp(mean) if c.log else mean)


@dataclass(slots=True)
class _RatioState:
    window: _Window = field(default_factory=_Window)
    alarm: bool = False


class RatioDetector:
    """The sample divided by the trailing average of earlier, non-breaching samples."""

    def __init__(self, config: RatioConfig) -> None:
        self.config = config
        self._resolve = config.resolve if config.resolve is not None else (1 + config.above) / 2

    def new_state(self) -> _RatioState:
        return _RatioState()

    def step(self, state: _RatioState, t: float, value: float) -> Assessment:
        c = self.config
        window = state.window
        window.expire(t - c.window)
        n = len(window.values)
        average = window.total / n if n else 0.0
        if n < c.min_baseline or average <= c.min_average or average <= 0:
            window.add(t, value)
            return _NOT_READY
        score = value / average
        breach = score > c.above
        clear = score <= self._resolve
        critical = c.critical is not None and score > c.critical
        state.alarm = breach or (state.alarm and not clear)
        if not state.alarm:
            window.add(t, value)
        return Assessment(True, breach, clear, critical, score, average)


@dataclass(slots=True)
class _CusumState(_Moments):
    high: float = 0.0
    low: float = 0.0
    alarm: bool = False


class CusumDetector:
    """Tabular CUSUM against a slowly following baseline; the statistic is capped at 2h so it recovers."""

    def __init__(self, config: CusumConfig) -> None:
        self.config = config
        self._resolve_h = config.resolve_h if config.resolve_h is not None else config.h / 4
        self._cap = 2 * max(config.h, config.critical_h or 0.0)

    def new_state(self) -> _CusumState:
        return _CusumState()

    def step(self, state: _CusumState, t: float, value: float) -> Assessment:
        c = self.config
        if c.log:
            if value <= 0:
                return _NOT_READY
            value = math.log(value)
        if state.n < c.warmup:
            _welford(state, value)
            return _NOT_READY
        sigma = _sigma_floor(math.sqrt(state.var), state.mean, c.min_sigma_ratio)
        z = (value - state.mean) / sigma
        if c.direction in ("up", "both"):
            state.high = min(self._cap, max(0.0, state.high + z - c.k))
        if c.direction in ("down", "both"):
            state.low = min(self._cap, max(0.0, state.low - z - c.k))
        score = max(state.high, state.low)
        breach = score > c.h
        clear = score <= self._resolve_h
        critical = c.critical_h is not None and score > c.critical_h
        baseline = math.exp(state.mean) if c.log else state.mean
        state.alarm = breach or (state.alarm and not clear)
        if not state.alarm:
            # Let the in-control mean follow slow movements (daily cycles). Every non-alarm sample
            # counts (learning only from samples with a zero sum would bias the mean low), clipped to
            # 2 sigma so one outlier moves it little; a real shift alarms before it is absorbed.
            clipped = min(max(value, state.mean - 2 * sigma), state.mean + 2 * sigma)
            _ewma(state, clipped, c.baseline_alpha)
        return Assessment(True, breach, clear, critical, score, baseline)


def build_detector(config: Any) -> Detector:
    """The detector for a validated detector config."""
    if isinstance(config, ThresholdConfig):
        return ThresholdDetector(config)
    if isinstance(config, EwmaConfig):
        return EwmaDetector(config)
    if isinstance(config, ZScoreConfig):
        return ZScoreDetector(config)
    if isinstance(config, RatioConfig):
        return RatioDetector(config)
    if isinstance(config, CusumConfig):
        return CusumDetector(config)
    raise TypeError(f"not a detector config: {type(config).__name__}")


def score_series(
    detector: Detector, times: np.ndarray[Any, Any], values: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Scores of a whole series (NaN while not ready), for replays and benchmarks.

    The threshold detector is vectorised; the others are recursive by nature and loop in Python,
    about a microsecond per sample.
    """
    if isinstance(detector, ThresholdDetector):
        return np.asarray(values, dtype=float).copy()
    state = detector.new_state()
    out = np.full(len(values), np.nan)
    for i, (t, v) in enumerate(zip(times.tolist(), values.tolist(), strict=True)):
        verdict = detector.step(state, t, v)
        if verdict.ready:
            out[i] = verdict.score
    return out
