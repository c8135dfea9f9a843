"""The derived-metric store: cardinality limit, expiry, temporality, start times, threads, OTLP shape."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from collector.genai.calls import AgentCallCounter, CallDeduplicator
from collector.metrics import OVERFLOW_ATTRIBUTE, DeltaTracker, MetricStore, snapshot_to_otlp
from collector.processors.genai_metrics import FACTORY as GENAI_METRICS
from otel_llm.conventions import metrics as m
from tests.collector.genai.builders import S, batch, chat_current
from tests.collector.processors.conftest import make, make_host, series, total

NOW = 1_800_000_000_000_000_000
SEC = 1_000_000_000
RESOURCE = ("svc",)


def test_cardinality_limit_holds_under_a_million_distinct_series() -> None:
    store = MetricStore("i")
    counter = store.counter(m.OTEL_LLM_REQUESTS, ("gen_ai.request.model",), cardinality_limit=2000)
    histogram = store.histogram(
        m.GEN_AI_CLIENT_OPERATION_DURATION, ("gen_ai.request.model",), cardinality_limit=2000
    )
    chunk = 50_000
    for start in range(0, 1_000_000, chunk):
        items = [((RESOURCE, (n,)), 1.0) for n in range(start, start + chunk)]  # ints: cheap distinct values
        counter.add_many(items, NOW)
        if start < 200_000:  # histograms share the admission code; a fifth of the keys keeps this fast
            histogram.record_many(items, NOW)
    assert len(counter) == 2001 and len(histogram) == 2001  # the limit plus the overflow series
    points = {p.attributes: p for p in counter.snapshot(NOW).points}
    assert points[((OVERFLOW_ATTRIBUTE, True),)].value == 1_000_000 - 2000
    assert sum(p.value for p in points.values()) == 1_000_000  # nothing lost, only folded
    overflow = {
        p.attributes: p.value
        for s in store.snapshot(NOW)
        if s.name == m.OTEL_LLM_METRIC_OVERFLOW
        for p in s.points
    }
    assert overflow == {
        (("otel_llm.metric.name", m.OTEL_LLM_REQUESTS),): 998_000,
        (("otel_llm.metric.name", m.GEN_AI_CLIENT_OPERATION_DURATION),): 198_000,
    }


def test_distinct_span_names_through_genai_metrics_stay_bounded() -> None:
    host = make_host()
    processor = make(GENAI_METRICS, host, cardinality_limit=100, merge_cache_size=1000)
    for start in range(0, 5_000, 1000):
        spans = [
            S(chat_current(f"model-{n}"), trace=n + 1, name=f"chat model-{n}")
            for n in range(start, start + 1000)
        ]
        processor.process(batch(spans))
    store = processor.store
    assert max(len(instrument) for instrument in store.instruments()) == 101
    assert total(store, m.OTEL_LLM_REQUESTS) == 5_000
    assert len(processor.calls) <= 1000 and len(processor.agents) <= 100_000


def test_bounded_merge_and_agent_caches() -> None:
    calls = CallDeduplicator(max_entries=10, window_s=1.0)
    spans = [batch([S(chat_current(), trace=n + 1)]).genai_spans()[0] for n in range(50)]
    calls.mark(spans, NOW)
    assert len(calls) == 10
    calls.mark([], NOW + 2 * SEC)
    assert len(calls) == 0  # the window passed
    agents = AgentCallCounter(max_entries=10)
    agents.note(spans, NOW)
    assert len(agents) == 10


def test_idle_series_expire_and_restart_with_a_new_start_time() -> None:
    store = MetricStore("i")
    counter = store.counter(m.OTEL_LLM_REQUESTS, ("model",), expiry_s=60)
    counter.add((RESOURCE, ("a",)), 1, NOW)
    counter.add((RESOURCE, ("b",)), 1, NOW)
    counter.add((RESOURCE, ("b",)), 1, NOW + 50 * SEC)
    snap = counter.snapshot(NOW + 100 * SEC)
    assert [p.attributes for p in snap.points] == [(("model", "b"),)]
    counter.add((RESOURCE, ("a",)), 5, NOW + 120 * SEC)
    (again,) = [p for p in counter.snapshot(NOW + 120 * SEC).points if p.attributes == (("model", "a"),)]
    assert again.value == 5 and again.start_ns == NOW + 120 * SEC


def test_expiry_makes_room_before_folding_into_overflow() -> None:
    store = MetricStore()
    counter = store.counter(m.OTEL_LLM_REQUESTS, ("model",), cardinality_limit=2, expiry_s=10)
    counter.add((RESOURCE, ("a",)), 1, NOW)
    counter.add((RESOURCE, ("b",)), 1, NOW)
    counter.add((RESOURCE, ("c",)), 1, NOW + 20 * SEC)  # a and b are idle: swept, c fits
    assert {p.attributes for p in counter.snapshot(NOW + 20 * SEC).points} == {(("model", "c"),)}


def test_cumulative_start_times_hold_across_flushes() -> None:
    store = MetricStore("i")
    counter = store.counter(m.OTEL_LLM_REQUESTS, ("model",))
    counter.add((RESOURCE, ("a",)), 2, NOW)
    first = counter.snapshot(NOW + SEC).points[0]
    counter.add((RESOURCE, ("a",)), 3, NOW + 2 * SEC)
    second = counter.snapshot(NOW + 3 * SEC).points[0]
    assert (first.start_ns, first.value) == (NOW, 2)
    assert (second.start_ns, second.value) == (NOW, 5)


def test_delta_cuts_chain_start_times_and_readers_are_independent() -> None:
    store = MetricStore("i")
    counter = store.counter(m.OTEL_LLM_REQUESTS, ("model",))
    histogram = store.histogram(m.GEN_AI_CLIENT_OPERATION_DURATION, ("model",))
    key = (RESOURCE, ("a",))
    delta, other = DeltaTracker(), DeltaTracker()
    counter.add(key, 2, NOW)
    histogram.record(key, 0.5, NOW)
    cut1 = {s.name: s.points[0] for s in delta.cut(store.snapshot(NOW + SEC))}
    counter.add(key, 3, NOW + 2 * SEC)
    histogram.record(key, 3.0, NOW + 2 * SEC)
    cut2 = {s.name: s.points[0] for s in delta.cut(store.snapshot(NOW + 3 * SEC))}
    cut3 = delta.cut(store.snapshot(NOW + 4 * SEC))
    assert (cut1[m.OTEL_LLM_REQUESTS].start_ns, cut1[m.OTEL_LLM_REQUESTS].value) == (NOW, 2)
    assert (cut2[m.OTEL_LLM_REQUESTS].start_ns, cut2[m.OTEL_LLM_REQUESTS].value) == (NOW + SEC, 3)
    h = cut2[m.GEN_AI_CLIENT_OPERATION_DURATION]
    assert (h.count, h.total, h.start_ns) == (1, 3.0, NOW + SEC)
    assert sum(h.bucket_counts) == 1
    assert cut3 == []  # nothing changed
    assert {s.name: s.points[0].value for s in other.cut(store.snapshot(NOW + 4 * SEC))}[
        m.OTEL_LLM_REQUESTS
    ] == 5
    request = snapshot_to_otlp(store, delta.cut(store.snapshot(NOW + 5 * SEC)), delta=True)
    assert request.resource_metrics == [] or all(
        metric.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.WhichOneof("data") == "sum"
    )


def test_otlp_snapshot_keeps_resources_units_buckets_and_instance() -> None:
    store = MetricStore("worker-7")
    store.register_resource(("a",), (("service.name", "a"),))
    store.register_resource(("b",), (("service.name", "b"), ("service.version", "2")))
    histogram = store.histogram(m.GEN_AI_CLIENT_OPERATION_DURATION, ("gen_ai.request.model",))
    histogram.record((("a",), ("gpt-4o",)), 0.3, NOW)
    histogram.record((("b",), ("gpt-4o",)), 100.0, NOW)
    request = snapshot_to_otlp(store, store.snapshot(NOW + SEC))
    by_service: dict[str, Any] = {}
    for rm in request.resource_metrics:
        attributes = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
        by_service[attributes["service.name"]] = (attributes, rm.scope_metrics[0].metrics[0])
    assert by_service["b"][0] == {"service.name": "b", "service.version": "2"}
    metric = by_service["a"][1]
    assert (metric.name, metric.unit) == (m.GEN_AI_CLIENT_OPERATION_DURATION, "s")
    point = metric.histogram.data_points[0]
    assert tuple(point.explicit_bounds) == m.GEN_AI_CLIENT_OPERATION_DURATION_BUCKETS
    assert point.bucket_counts[5] == 1 and point.min == point.max == 0.3  # 0.16 < 0.3 <= 0.32
    assert by_service["b"][1].histogram.data_points[0].bucket_counts[-1] == 1  # above the last bound
    assert {kv.key: kv.value.string_value for kv in point.attributes}["otel_llm.instance.id"] == "worker-7"
    assert (
        metric.histogram.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    )


def test_concurrent_writers_lose_nothing() -> None:
    store = MetricStore()
    counter = store.counter(m.OTEL_LLM_REQUESTS, ("model",))
    histogram = store.histogram(m.GEN_AI_CLIENT_OPERATION_DURATION, ("model",))

    def write(thread: int) -> None:
        for n in range(2000):
            key = (RESOURCE, (f"m{n % 7}",))
            counter.add(key, 1, NOW)
            histogram.record_many([(key, 0.1), (key, 0.2)], NOW)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    snapshots = []
    while any(t.is_alive() for t in threads):
        snapshots.append(store.snapshot())  # readers run alongside writers
        time.sleep(0.001)
    for t in threads:
        t.join()
    assert sum(p.value for p in counter.snapshot(NOW).points) == 16_000
    assert sum(p.count for p in histogram.snapshot(NOW).points) == 32_000


def test_kind_clash_is_an_error() -> None:
    store = MetricStore()
    store.counter("x.y", ("a",))
    with pytest.raises(ValueError, match="already a counter"):
        store.gauge("x.y", ("a",))


def test_gauges_keep_the_last_value() -> None:
    store = MetricStore()
    gauge = store.gauge(m.OTEL_LLM_DRIFT_SCORE, ("signal",))
    gauge.set((RESOURCE, ("s",)), 0.5, NOW)
    gauge.set((RESOURCE, ("s",)), 0.25, NOW + SEC)
    assert series_value(store, m.OTEL_LLM_DRIFT_SCORE) == 0.25


def series_value(store: MetricStore, name: str) -> float:
    (point,) = series(store, name).values()
    return float(point.value)
