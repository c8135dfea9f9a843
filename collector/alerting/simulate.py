"""Synthetic LLM traffic for tests, benchmarks and demos: a day with noise and a daily cycle, plus faults.

Deterministic for a seed. Each minute draws a Poisson number of requests around a rate that follows a
sine over the day; each request gets a log-normal latency, a time to first token, tokens, a cost, a
small error probability and (for a share of requests) a quality score and thumbs feedback. A
:class:`Fault` multiplies or replaces one of these for a time span, which is how the tests inject a
cost spike, a latency step, an error burst or a quality drop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from collector.alerting.signals import Observation

__all__ = ["DAY_S", "Fault", "TrafficModel", "generate"]

DAY_S = 86400.0

FaultKind = Literal["cost", "latency", "errors", "quality", "tokens"]


@dataclass(frozen=True)
class Fault:
    """From ``start`` for ``duration`` seconds (offsets from the start of the simulation)."""

    kind: FaultKind
    start_s: float
    duration_s: float
    factor: float = 3.0  # cost, latency, tokens: multiplier; errors: error probability; quality: mean score

    def active(self, offset: float) -> bool:
        return self.start_s <= offset < self.start_s + self.duration_s


@dataclass(frozen=True)
class TrafficModel:
    """The stationary behaviour; defaults look like a modest chat feature."""

    requests_per_minute: float = 40.0
    daily_amplitude: float = 0.5  # rate swings +-50% over the day
    latency_median_s: float = 1.2
    latency_sigma: float = 0.35  # log-normal shape
    latency_daily_amplitude: float = 0.1  # slower at peak load
    ttft_share: float = 0.25  # time to first token as a share of the duration
    tokens_mean: float = 900.0
    tokens_sd: float = 250.0
    cost_per_token: float = 2e-6
    error_rate: float = 0.01
    quality_share: float = 0.3  # share of requests with an evaluation score
    quality_mean: float = 0.85
    thumbs_share: float = 0.1
    thumbs_down: float = 0.08


def generate(
    start: float,
    duration_s: float,
    *,
    faults: Sequence[Fault] = (),
    model: TrafficModel | None = None,
    seed: int = 0,
) -> Iterator[tuple[float, Observation]]:
    """Observations ``(end time, observation)`` in time order, one minute at a time."""
    m = model or TrafficModel()
    rng = np.random.default_rng(seed)
    minutes = int(duration_s // 60)
    for minute in range(minutes):
        t0 = start + minute * 60.0
        offset = t0 - start
        phase = math.sin(2 * math.pi * ((t0 % DAY_S) / DAY_S - 0.25))
        rate = m.requests_per_minute * (1 + m.daily_amplitude * phase)
        count = int(rng.poisson(rate))
        active = [f for f in faults if f.active(offset)]
        lat_factor = 1 + m.latency_daily_amplitude * phase
        cost_factor = 1.0
        token_factor = 1.0
        err = m.error_rate
        quality = m.quality_mean
        for fault in active:
            if fault.kind == "latency":
                lat_factor *= fault.factor
            elif fault.kind == "cost":
                cost_factor *= fault.factor
            elif fault.kind == "errors":
                err = fault.factor
            elif fault.kind == "quality":
                quality = fault.factor
            elif fault.kind == "tokens":
                token_factor *= fault.factor
        times = np.sort(rng.uniform(t0, t0 + 60.0, count))
        durations = m.latency_median_s * lat_factor * np.exp(rng.normal(0, m.latency_sigma, count))
        tokens = np.maximum(10, rng.normal(m.tokens_mean * token_factor, m.tokens_sd, count)).astype(int)
        errors = rng.random(count) < err
        has_quality = rng.random(count) < m.quality_share
        scores = np.clip(rng.normal(quality, 0.08, count), 0, 1)
        has_thumbs = rng.random(count) < m.thumbs_share
        thumbs = (rng.random(count) >= m.thumbs_down).astype(float)
        error_kinds = rng.choice(["500", "429", "timeout"], size=count, p=[0.5, 0.3, 0.2])
        for i in range(count):
            cost = float(tokens[i]) * m.cost_per_token * cost_factor
            yield (
                float(times[i]),
                Observation(
                    duration_s=float(durations[i]),
                    is_error=bool(errors[i]),
                    error_type=str(error_kinds[i]) if errors[i] else "",
                    ttft_s=float(durations[i]) * m.ttft_share,
                    tokens=int(tokens[i]),
                    cost=cost,
                    quality=(float(scores[i]),) if has_quality[i] else (),
                    thumbs=(float(thumbs[i]),) if has_thumbs[i] else (),
                ),
            )
