"""The collector's own telemetry: the OpenTelemetry Collector's metric names, on a Prometheus registry.

Names match the Collector's (``otelcol_receiver_accepted_spans_total`` and so on) so that existing
dashboards and alerts for the Collector work unchanged. Each service owns its registry, so tests and
several services in one process never share counters. Components take pre-bound children from the
``for_*`` methods once, at creation, so the hot path pays one ``inc()`` per batch, never a label lookup.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from collector.component import Signal
from otel_llm.conventions import metrics as m

__all__ = ["ExporterTelemetry", "ProcessorTelemetry", "ReceiverTelemetry", "SelfTelemetry", "prom_name"]

_ITEM_WORD = {Signal.TRACES: "spans", Signal.METRICS: "metric_points", Signal.LOGS: "log_records"}


def prom_name(name: str) -> str:
    """Prometheus form of a dotted metric name, before unit and ``_total`` suffixes."""
    return name.replace(".", "_").replace("-", "_")


@dataclass(frozen=True)
class ReceiverTelemetry:
    """Counters of one receiver and transport, per signal."""

    accepted: dict[Signal, Counter]
    refused: dict[Signal, Counter]
    failed: dict[Signal, Counter]
    unauthenticated: Counter


@dataclass(frozen=True)
class ProcessorTelemetry:
    """Items in and out of one processor."""

    incoming: Counter
    outgoing: Counter


@dataclass(frozen=True)
class ExporterTelemetry:
    """Counters and queue gauges of one exporter for one signal."""

    sent: Counter
    send_failed: Counter
    enqueue_failed: Counter
    queue_size: Gauge
    queue_capacity: Gauge


class SelfTelemetry:
    """Owns the registry; hands out label-bound instruments to components."""

    def __init__(self, instance_id: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.instance_id = instance_id
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self.registry.register(_ProcessCollector())

    def counter(self, name: str, description: str, labels: Iterable[str]) -> Counter:
        """A counter by dotted name, created once per registry."""
        key = prom_name(name)
        if key not in self._counters:
            self._counters[key] = Counter(key, description, tuple(labels), registry=self.registry)
        return self._counters[key]

    def gauge(self, name: str, description: str, labels: Iterable[str]) -> Gauge:
        """A gauge by dotted name, created once per registry."""
        key = prom_name(name)
        if key not in self._gauges:
            self._gauges[key] = Gauge(key, description, tuple(labels), registry=self.registry)
        return self._gauges[key]

    def for_receiver(self, receiver: str, transport: str) -> ReceiverTelemetry:
        """Counters for one receiver id and transport (``grpc`` or ``http``)."""
        labels = ("receiver", "transport")

        def by_signal(template: str, description: str) -> dict[Signal, Counter]:
            return {
                signal: self.counter(template.format(item=_ITEM_WORD[signal]), description, labels).labels(
                    receiver, transport
                )
                for signal in Signal
            }

        return ReceiverTelemetry(
            accepted=by_signal("otelcol.receiver.accepted_{item}", "Items the receiver accepted."),
            refused=by_signal(
                "otelcol.receiver.refused_{item}", "Items refused with a retryable error (backpressure)."
            ),
            failed=by_signal("otelcol.receiver.failed_{item}", "Items rejected as malformed or too large."),
            unauthenticated=self.counter(
                m.OTEL_LLM_RECEIVER_UNAUTHENTICATED, m.OTEL_LLM_RECEIVER_UNAUTHENTICATED_DESCRIPTION, labels
            ).labels(receiver, transport),
        )

    def for_processor(self, processor: str, pipeline: str, signal: Signal) -> ProcessorTelemetry:
        """Item counters for one processor in one pipeline."""
        labels = ("processor", "pipeline", "otel_signal")
        return ProcessorTelemetry(
            incoming=self.counter(
                m.OTELCOL_PROCESSOR_INCOMING_ITEMS, m.OTELCOL_PROCESSOR_INCOMING_ITEMS_DESCRIPTION, labels
            ).labels(processor, pipeline, signal.value),
            outgoing=self.counter(
                m.OTELCOL_PROCESSOR_OUTGOING_ITEMS, m.OTELCOL_PROCESSOR_OUTGOING_ITEMS_DESCRIPTION, labels
            ).labels(processor, pipeline, signal.value),
        )

    def for_exporter(self, exporter: str, signal: Signal) -> ExporterTelemetry:
        """Counters and queue gauges for one exporter and signal."""
        item = _ITEM_WORD[signal]
        labels = ("exporter",)
        return ExporterTelemetry(
            sent=self.counter(f"otelcol.exporter.sent_{item}", "Items sent successfully.", labels).labels(
                exporter
            ),
            send_failed=self.counter(
                f"otelcol.exporter.send_failed_{item}", "Items that failed to send for good.", labels
            ).labels(exporter),
            enqueue_failed=self.counter(
                f"otelcol.exporter.enqueue_failed_{item}",
                "Items that could not be added to the sending queue.",
                labels,
            ).labels(exporter),
            queue_size=self.gauge(
                m.OTELCOL_EXPORTER_QUEUE_SIZE,
                m.OTELCOL_EXPORTER_QUEUE_SIZE_DESCRIPTION,
                ("exporter", "otel_signal"),
            ).labels(exporter, signal.value),
            queue_capacity=self.gauge(
                m.OTELCOL_EXPORTER_QUEUE_CAPACITY,
                m.OTELCOL_EXPORTER_QUEUE_CAPACITY_DESCRIPTION,
                ("exporter", "otel_signal"),
            ).labels(exporter, signal.value),
        )


class _ProcessCollector(Collector):
    """``otelcol_process_*``: CPU seconds, resident memory and uptime of this process."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._page_size = os.sysconf("SC_PAGE_SIZE")

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        yield CounterMetricFamily(
            prom_name(m.OTELCOL_PROCESS_CPU_SECONDS),
            m.OTELCOL_PROCESS_CPU_SECONDS_DESCRIPTION,
            value=usage.ru_utime + usage.ru_stime,
        )
        yield GaugeMetricFamily(
            prom_name(m.OTELCOL_PROCESS_MEMORY_RSS),
            m.OTELCOL_PROCESS_MEMORY_RSS_DESCRIPTION,
            value=_rss_bytes(),
        )
        yield CounterMetricFamily(
            prom_name(m.OTELCOL_PROCESS_UPTIME),
            m.OTELCOL_PROCESS_UPTIME_DESCRIPTION,
            value=time.monotonic() - self._started,
        )


def _rss_bytes() -> float:
    """Current resident set size from /proc (peak RSS from getrusage elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
