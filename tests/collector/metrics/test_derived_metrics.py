"""derived_metrics receiver: snapshots of the store into metrics pipelines, cumulative or delta."""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from collector.component import ComponentId, CreateSettings, Kind, Signal
from collector.data import Batch, MetricsBatch
from collector.metrics import shared_store
from collector.receivers.derived_metrics import FACTORY
from otel_llm.conventions import metrics as m
from tests.collector.processors.conftest import make_host


class _Sink:
    def __init__(self) -> None:
        self.batches: list[MetricsBatch] = []

    def consume(self, batch: Batch) -> None:
        assert isinstance(batch, MetricsBatch)
        self.batches.append(batch)


def _receiver(temporality: str) -> tuple[Any, _Sink, Any]:
    host = make_host("w9")
    settings = CreateSettings(
        ComponentId("derived_metrics"), Kind.RECEIVER, logging.getLogger("t"), host.telemetry
    )
    receiver = FACTORY.create(
        FACTORY.config_type.model_validate({"interval": "1h", "temporality": temporality}), settings
    )
    sink = _Sink()
    receiver.bind({Signal.METRICS: sink})
    receiver.start(host)
    return receiver, sink, shared_store(host)


def _sum_points(batch: MetricsBatch) -> list[Any]:
    return [
        point
        for rm in batch.request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == m.OTEL_LLM_REQUESTS
        for point in metric.sum.data_points
    ]


def test_cumulative_snapshots() -> None:
    receiver, sink, store = _receiver("cumulative")
    counter = store.counter(m.OTEL_LLM_REQUESTS, ("gen_ai.request.model",))
    t0 = time.time_ns()
    counter.add(((), ("gpt-4o",)), 2, t0)
    assert receiver.flush() == 1
    counter.add(((), ("gpt-4o",)), 3, t0 + 1)
    receiver.shutdown(1)  # sends a last snapshot
    first, last = (_sum_points(b)[0] for b in sink.batches)
    assert (first.as_double, last.as_double) == (2, 5)
    assert first.start_time_unix_nano == last.start_time_unix_nano == t0
    metric = sink.batches[0].request.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def test_delta_snapshots_chain() -> None:
    receiver, sink, store = _receiver("delta")
    counter = store.counter(m.OTEL_LLM_REQUESTS, ("gen_ai.request.model",))
    t0 = time.time_ns()
    counter.add(((), ("gpt-4o",)), 2, t0)
    receiver.flush()
    assert receiver.flush() == 0  # nothing new: nothing sent
    counter.add(((), ("gpt-4o",)), 3, t0 + 1)
    receiver.flush()
    receiver.shutdown(1)
    first, second = (_sum_points(b)[0] for b in sink.batches)
    assert (first.as_double, second.as_double) == (2, 3)
    assert second.start_time_unix_nano == first.time_unix_nano
    metric = sink.batches[1].request.resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


def test_a_refusing_pipeline_does_not_kill_the_timer() -> None:
    receiver, _, store = _receiver("cumulative")

    class Refusing:
        def consume(self, batch: Batch) -> None:
            raise RuntimeError("queue full")

    receiver.bind({Signal.METRICS: Refusing()})
    store.counter(m.OTEL_LLM_REQUESTS, ("gen_ai.request.model",)).add(((), ("x",)), 1, time.time_ns())
    assert receiver.flush() == 0
    receiver.shutdown(1)
