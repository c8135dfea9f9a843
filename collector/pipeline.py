"""Wiring: receivers → processors → exporters, with the Collector's per-processor item counters.

Each pipeline gets its own processor instances (as in the Collector), while receivers and exporters are
shared by every pipeline that names them. A receiver feeding several pipelines hands each its own copy
of the batch (the last one gets the original), since processors may change spans in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.component import Consumer, Processor
from collector.data import Batch, LogsBatch, MetricsBatch, TraceBatch
from collector.telemetry import ProcessorTelemetry

__all__ = ["FanOut", "ProcessorStage", "copy_batch"]


class ProcessorStage:
    """Runs one processor and forwards its output; counts items in and out."""

    __slots__ = ("_next", "_processor", "_telemetry")

    def __init__(self, processor: Processor, telemetry: ProcessorTelemetry, next_consumer: Consumer) -> None:
        self._processor = processor
        self._telemetry = telemetry
        self._next = next_consumer

    def consume(self, batch: Batch) -> None:
        self._telemetry.incoming.inc(batch.items)
        result = self._processor.process(batch)
        if result is None:
            return
        self._telemetry.outgoing.inc(result.items)
        self._next.consume(result)


class FanOut:
    """Gives one batch to several consumers; the first refusal is raised after all were tried.

    Every consumer sees the batch even when an earlier one refused it, so a slow exporter cannot starve
    a healthy one. The receiver then answers with a retryable error, and the sender's retry may deliver
    the batch twice to the consumers that took it: the at-least-once trade-off OTLP accepts.
    """

    __slots__ = ("_consumers", "_copy")

    def __init__(self, consumers: Sequence[Consumer], copy: bool = False) -> None:
        self._consumers = tuple(consumers)
        self._copy = copy and len(self._consumers) > 1

    def consume(self, batch: Batch) -> None:
        if len(self._consumers) == 1:
            self._consumers[0].consume(batch)
            return
        failure: Exception | None = None
        last = len(self._consumers) - 1
        for index, consumer in enumerate(self._consumers):
            try:
                consumer.consume(copy_batch(batch) if self._copy and index != last else batch)
            except Exception as exc:  # keep going: every consumer gets its chance, see class docstring
                failure = failure or exc
        if failure is not None:
            raise failure


def copy_batch(batch: Batch) -> Batch:
    """A deep copy of the batch's request, for a pipeline that may change it."""
    if isinstance(batch, TraceBatch):
        trace_request = type(batch.request)()
        trace_request.CopyFrom(batch.request)
        return TraceBatch(trace_request, batch.received_ns)
    if isinstance(batch, MetricsBatch):
        metrics_request = type(batch.request)()
        metrics_request.CopyFrom(batch.request)
        return MetricsBatch(metrics_request, batch.received_ns)
    logs_request = type(batch.request)()
    logs_request.CopyFrom(batch.request)
    return LogsBatch(logs_request, batch.received_ns)
