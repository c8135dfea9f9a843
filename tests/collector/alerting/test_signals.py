"""Signal aggregation: buckets per interval and group, mergeable windows, quantiles, error classes."""

from __future__ import annotations

import numpy as np
import pytest

from collector.alerting.signals import (
    SIGNALS,
    Bucket,
    Observation,
    SignalAggregator,
    compute,
    error_class,
    is_signal,
)


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("429", "4xx"),
        ("404", "4xx"),
        ("503", "5xx"),
        ("RateLimitError", "4xx"),
        ("openai.BadRequestError", "4xx"),
        ("InternalServerError", "5xx"),
        ("overloaded_error", "5xx"),
        ("timeout", "other"),
        ("_OTHER", "other"),
    ],
)
def test_error_class(error_type: str, expected: str) -> None:
    assert error_class(error_type) == expected


def test_known_signals() -> None:
    assert is_signal("latency_p95_s") and is_signal("error_rate:timeout")
    assert not is_signal("error_rate:") and not is_signal("p95")
    assert len(SIGNALS) == len(set(SIGNALS))


def test_quantiles_within_a_bin_width() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(0.0, 0.5, 5000)
    bucket = Bucket()
    for value in values:
        bucket.add(Observation(duration_s=float(value)))
    for signal, q in (("latency_p50_s", 50), ("latency_p95_s", 95), ("latency_p99_s", 99)):
        got = compute(signal, bucket, 60.0)
        assert got is not None and got.n == 5000
        assert got.value == pytest.approx(np.percentile(values, q), rel=0.06)


def test_rates_per_request_and_per_minute() -> None:
    bucket = Bucket()
    for i in range(10):
        bucket.add(
            Observation(
                duration_s=1.0,
                is_error=i < 3,
                error_type=["500", "429", "timeout"][i] if i < 3 else "",
                ttft_s=0.2 if i % 2 else None,
                tokens=100,
                cost=0.01 if i < 5 else None,
                quality=(0.5,) if i == 0 else (),
                thumbs=(0.0,) if i < 2 else ((1.0,) if i < 4 else ()),
            )
        )
    window = 120.0
    value = {name: compute(name, bucket, window) for name in SIGNALS}
    assert value["requests"] and value["requests"].value == 10
    assert value["requests_per_minute"] and value["requests_per_minute"].value == 5
    assert value["error_rate"] and value["error_rate"].value == pytest.approx(0.3)
    assert value["error_rate_5xx"] and value["error_rate_5xx"].value == pytest.approx(0.1)
    assert value["error_rate_4xx"] and value["error_rate_4xx"].value == pytest.approx(0.1)
    assert value["error_rate_other"] and value["error_rate_other"].value == pytest.approx(0.1)
    assert compute("error_rate:timeout", bucket, window) == compute("error_rate_other", bucket, window)
    assert value["ttft_p50_s"] and value["ttft_p50_s"].n == 5
    assert value["tokens_per_minute"] and value["tokens_per_minute"].value == 500
    cost = value["cost_per_request"]
    assert cost and cost.value == pytest.approx(0.01) and cost.n == 5
    assert value["cost_per_minute"] and value["cost_per_minute"].value == pytest.approx(0.025)
    assert value["quality_score"] and (value["quality_score"].value, value["quality_score"].n) == (0.5, 1)
    assert value["thumbs_down_rate"] and value["thumbs_down_rate"].value == 0.5
    assert value["drift_state"] is None  # only from the store


def test_empty_window_has_no_rates() -> None:
    assert compute("error_rate", Bucket(), 60) is None
    assert compute("latency_p95_s", Bucket(), 60) is None
    requests = compute("requests", Bucket(), 60)
    assert requests is not None and requests.value == 0


def test_aggregator_closes_intervals_in_data_time_and_merges_windows() -> None:
    agg = SignalAggregator(60.0, keep_intervals=5)
    start = 1_700_000_040.0  # a minute boundary
    assert agg.due(start) == []
    for minute in range(3):
        assert agg.due(start + minute * 60 + 1) == ([start + minute * 60] if minute else [])
        for _ in range(minute + 1):
            agg.observe(start + minute * 60 + 1, ("a",), Observation(duration_s=1.0))
    assert agg.due(start + 185) == [start + 180]
    one = agg.window(("a",), start + 180, 60)
    three = agg.window(("a",), start + 180, 180)
    assert one is not None and one.count == 3
    assert three is not None and three.count == 6
    assert agg.window(("b",), start + 180, 60) is None


def test_late_data_goes_to_the_open_interval_and_is_counted() -> None:
    agg = SignalAggregator(60.0, keep_intervals=2)
    agg.due(600.0)
    agg.observe(610.0, ("a",), Observation(duration_s=1.0))
    agg.due(700.0)
    agg.observe(650.0, ("a",), Observation(duration_s=1.0))  # interval 600 is closed
    assert agg.late == 1
    window = agg.window(("a",), 720.0, 60)
    assert window is not None and window.count == 1


def test_groups_are_bounded_and_expire() -> None:
    agg = SignalAggregator(60.0, keep_intervals=1, max_groups=2)
    for name in "abc":
        agg.observe(10.0, (name,), Observation(duration_s=1.0))
    assert sorted(agg.group_keys()) == [("a",), ("b",)] and agg.overflow == 1
    agg.observe(500.0, ("a",), Observation(duration_s=1.0))
    assert agg.expire(before=100.0) == [("b",)]
