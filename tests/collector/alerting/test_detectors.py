"""Detectors and the rule state machine: fire and resolve conditions, warm-up, hysteresis, cooldown."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from collector.alerting.detectors import (
    CusumDetector,
    DetectorConfig,
    EwmaDetector,
    RatioDetector,
    ThresholdDetector,
    ZScoreDetector,
    build_detector,
    hour_of_week,
    score_series,
)
from collector.alerting.engine import AlertState, RuleRunner
from collector.alerting.rules import RuleConfig
from collector.alerting.signals import SignalValue

_ADAPTER: TypeAdapter[Any] = TypeAdapter(DetectorConfig)


def detector(**raw: Any) -> Any:
    return build_detector(_ADAPTER.validate_python(raw))


def rule(**raw: Any) -> RuleConfig:
    raw.setdefault("name", "R")
    raw.setdefault("signal", "error_rate")
    raw.setdefault("min_samples", 1)
    raw.setdefault("cooldown", "0s")
    return RuleConfig.model_validate(raw)


def run(runner: RuleRunner, values: list[float], step: float = 60.0, n: int = 100) -> list[tuple[int, str]]:
    """Feed values one interval apart; return (index, new state) for each transition."""
    out = []
    for i, value in enumerate(values):
        transition = runner.step(("g",), {"service_name": "g"}, i * step, SignalValue(value, n))
        if transition:
            out.append((i, transition.state.value))
    return out


def noise(n: int, mean: float, sd: float, seed: int = 0) -> list[float]:
    return list(np.random.default_rng(seed).normal(mean, sd, n))


def test_threshold_hysteresis_and_critical() -> None:
    d = detector(type="threshold", above=5, resolve=4, critical=10)
    assert isinstance(d, ThresholdDetector)
    assert d.step(None, 0, 5.0).breach is False
    v = d.step(None, 0, 6.0)
    assert v.breach and not v.clear and not v.critical
    inside = d.step(None, 0, 4.5)
    assert not inside.breach and not inside.clear  # in the band: neither fires nor resolves
    assert d.step(None, 0, 4.0).clear
    assert d.step(None, 0, 11.0).critical


def test_threshold_below() -> None:
    d = detector(type="threshold", below=0.7, resolve=0.75)
    assert d.step(None, 0, 0.6).breach
    assert not d.step(None, 0, 0.72).clear
    assert d.step(None, 0, 0.8).clear


def test_ewma_warms_up_then_fires_on_step_and_recovers() -> None:
    d = detector(type="ewma", alpha=0.1, k=4, warmup=20)
    assert isinstance(d, EwmaDetector)
    state = d.new_state()
    values = noise(60, 10.0, 0.5) + [20.0] * 5 + noise(10, 10.0, 0.5, seed=1)
    verdicts = [d.step(state, i, v) for i, v in enumerate(values)]
    assert not any(v.ready for v in verdicts[:20])
    assert not any(v.breach for v in verdicts[20:60])
    assert all(v.breach for v in verdicts[60:65])
    # The step was not learned: the baseline is still about 10 and the series clears at once.
    assert verdicts[64].baseline == pytest.approx(10.0, abs=0.5)
    assert verdicts[65].clear


def test_ewma_log_and_direction_down() -> None:
    d = detector(type="ewma", k=4, warmup=10, direction="down", log=True)
    state = d.new_state()
    for i, v in enumerate(noise(30, 2.0, 0.05)):
        d.step(state, i, v)
    assert not d.step(state, 31, 4.0).breach  # up does not count
    assert d.step(state, 32, 1.0).breach


def test_zscore_trailing_window_and_seasonality() -> None:
    d = detector(type="zscore", window="1d", seasonality="hour_of_day", k=4, min_baseline=5)
    assert isinstance(d, ZScoreDetector)
    state = d.new_state()
    rng = np.random.default_rng(3)
    # Hourly samples for a week: the value is 100 at 12:00 and 10 otherwise (a daily pattern).
    t = 0.0
    for _ in range(7 * 24):
        hour = int(t // 3600) % 24
        verdict = d.step(state, t, (100.0 if hour == 12 else 10.0) + rng.normal(0, 1))
        if verdict.ready:
            assert not verdict.breach, f"seasonal peak fired at hour {hour}"
        t += 3600
    # Window of 1 day and one sample per slot per day: min_baseline 5 would need 5 days; shrink check:
    no_season = detector(type="zscore", window="7d", k=4, min_baseline=20)
    s2 = no_season.new_state()
    fired = [no_season.step(s2, i * 3600.0, (100.0 if i % 24 == 12 else 10.0)).breach for i in range(7 * 24)]
    assert any(fired), "without seasonality the daily peak looks anomalous"


def test_zscore_forgets_samples_older_than_window() -> None:
    d = detector(type="zscore", window="10m", k=3, min_baseline=3)
    state = d.new_state()
    for i in range(10):
        d.step(state, i * 60.0, 10.0 + (i % 2))
    assert len(state.slots[0].values) == 10
    d.step(state, 30 * 60.0, 10.0)
    assert len(state.slots[0].values) == 1  # the old ones expired, the new one was learned (not ready)


def test_hour_of_week_starts_monday() -> None:
    monday = 1_700_438_400.0  # 2023-11-20 00:00 UTC, a Monday
    assert hour_of_week(monday) == 0
    assert hour_of_week(monday + 3600 * 167) == 167
    assert hour_of_week(monday + 3600 * 168) == 0


def test_ratio_spike() -> None:
    d = detector(type="ratio", window="1h", above=3, min_baseline=5)
    assert isinstance(d, RatioDetector)
    state = d.new_state()
    for i in range(30):
        assert not d.step(state, i * 60.0, 1.0 + 0.1 * (i % 3)).breach
    spike = d.step(state, 31 * 60.0, 3.5)
    assert spike.breach and spike.score == pytest.approx(3.5 / 1.1, rel=0.02)
    assert not d.step(state, 32 * 60.0, 2.5).clear  # 2.5/1.1 > default resolve (2.0)
    assert d.step(state, 33 * 60.0, 1.0).clear


def test_cusum_detects_small_persistent_shift_that_ewma_misses() -> None:
    base = noise(200, 100.0, 10.0, seed=4)
    shifted = [v + 10.0 for v in noise(60, 100.0, 10.0, seed=5)]  # +1 sigma
    cusum = detector(type="cusum", k=0.5, h=8, warmup=50)
    assert isinstance(cusum, CusumDetector)
    ewma = detector(type="ewma", k=4, warmup=50)
    s1, s2 = cusum.new_state(), ewma.new_state()
    c_fire = [cusum.step(s1, i, v).breach for i, v in enumerate(base + shifted)]
    e_fire = [ewma.step(s2, i, v).breach for i, v in enumerate(base + shifted)]
    assert not any(c_fire[:200])
    assert any(c_fire[200:240])
    assert sum(e_fire[200:]) < sum(c_fire[200:])


def test_score_series_matches_steps() -> None:
    times = np.arange(50, dtype=float)
    values = np.array(noise(50, 5.0, 1.0))
    scores = score_series(detector(type="ewma", warmup=10), times, values)
    assert np.isnan(scores[:10]).all() and np.isfinite(scores[10:]).all()
    assert (score_series(detector(type="threshold", above=1), times, values) == values).all()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"type": "threshold"}, "expected exactly one of `above` or `below`"),
        ({"type": "threshold", "above": 5, "resolve": 6}, "expected a value <= above (5), got 6"),
        ({"type": "ewma", "k": 3, "resolve_k": 4}, "expected a value <= k (3), got 4"),
        ({"type": "cusum", "h": 5, "critical_h": 4}, "expected a value >= h (5), got 4"),
        ({"type": "ratio", "above": 3, "resolve": 4}, "expected a value <= above (3), got 4"),
    ],
    ids=["threshold-no-bound", "threshold-resolve", "ewma-resolve-k", "cusum-critical", "ratio-resolve"],
)
def test_detector_cross_field_problems(raw: dict[str, Any], message: str) -> None:
    assert [msg for _, msg in _ADAPTER.validate_python(raw).problems()] == [message]


# -- state machine -----------------------------------------------------------------------------------


def test_fires_without_for_and_resolves_with_hysteresis() -> None:
    runner = RuleRunner(rule(detector={"type": "threshold", "above": 0.2, "resolve": 0.1}))
    assert run(runner, [0.0, 0.3, 0.15, 0.15, 0.05, 0.0]) == [(1, "firing"), (4, "inactive")]


def test_for_makes_it_pending_first_and_a_dip_resets() -> None:
    runner = RuleRunner(rule(**{"for": "2m"}, detector={"type": "threshold", "above": 1}))
    got = run(runner, [2, 2, 0, 2, 2, 2, 2])
    assert got == [(0, "pending"), (2, "inactive"), (3, "pending"), (5, "firing")]


def test_keep_firing_for_damps_flapping() -> None:
    runner = RuleRunner(rule(keep_firing_for="3m", detector={"type": "threshold", "above": 1}))
    got = run(runner, [2, 0, 2, 0, 2, 0, 0, 0, 0])
    assert got == [(0, "firing"), (8, "inactive")]


def test_cooldown_stops_a_flapping_signal_from_paging_again() -> None:
    runner = RuleRunner(rule(cooldown="10m", detector={"type": "threshold", "above": 1}))
    flapping = [2.0, 0.0] * 10
    got = run(runner, flapping)
    fired = [i for i, state in got if state == "firing"]
    assert fired == [0, 12]  # resolved at 1, quiet until 1 + 10 intervals, next breach at 12


def test_min_samples_windows_are_no_data() -> None:
    runner = RuleRunner(rule(min_samples=20, detector={"type": "threshold", "above": 0.2}))
    assert run(runner, [1.0, 1.0], n=5) == []
    assert run(runner, [1.0], n=20) == [(0, "firing")]


def test_severity_is_critical_when_the_firing_sample_is() -> None:
    runner = RuleRunner(rule(severity="warning", detector={"type": "threshold", "above": 1, "critical": 5}))
    transition = runner.step(("g",), {}, 0.0, SignalValue(9.0, 10))
    assert transition is not None and transition.severity == "critical"
    assert transition.labels["severity"] == "critical"


def test_annotations_are_filled_and_fingerprint_is_stable() -> None:
    r = rule(
        annotations={"summary": "{rule} on {service_name}: {value} vs {baseline} ({missing})"},
        detector={"type": "threshold", "above": 1},
    )
    t1 = RuleRunner(r).step(("a",), {"service_name": "a"}, 0.0, SignalValue(2.0, 10))
    t2 = RuleRunner(r).step(("a",), {"service_name": "a"}, 99.0, SignalValue(3.0, 10))
    assert t1 is not None and t2 is not None
    assert t1.annotations["summary"] == "R on a: 2 vs 1 ({missing})"
    assert t1.fingerprint == t2.fingerprint
    assert t1.state is AlertState.FIRING and t1.started_at == 0.0
    assert not math.isnan(t1.score)
