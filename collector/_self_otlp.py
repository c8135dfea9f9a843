"""Pushes the collector's own metrics (the self-telemetry registry) over OTLP/HTTP on an interval.

For teams whose metrics backend takes OTLP rather than scraping: the same counters and gauges as the
Prometheus endpoint, under the same names (``otelcol_receiver_accepted_spans`` ...), as cumulative
sums and gauges with the collector's ``service.instance.id``. Runs in its own thread; a failed push is
logged (at most once a minute) and retried at the next interval, never blocking the pipelines.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric, NumberDataPoint
from prometheus_client import CollectorRegistry

from collector.logs import event, get_logger
from otel_llm.conventions import attributes as attrs

__all__ = ["SelfTelemetryPusher", "registry_to_otlp"]

_SCOPE = "otel_llm.collector.self_telemetry"


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def registry_to_otlp(
    registry: CollectorRegistry, resource: Mapping[str, str], start_ns: int, now_ns: int
) -> ExportMetricsServiceRequest:
    """One export request with every counter (cumulative monotonic sum) and gauge of ``registry``."""
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend(_kv(k, v) for k, v in resource.items())
    scope_metrics = resource_metrics.scope_metrics.add()
    scope_metrics.scope.name = _SCOPE
    for family in registry.collect():
        if family.type not in ("counter", "gauge"):
            continue
        metric = Metric(name=family.name, description=family.documentation)
        if family.type == "counter":
            metric.sum.is_monotonic = True
            metric.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
            points = metric.sum.data_points
            samples = [s for s in family.samples if s.name.endswith("_total")]
        else:
            points = metric.gauge.data_points
            samples = list(family.samples)
        for sample in samples:
            point = NumberDataPoint(time_unix_nano=now_ns, as_double=float(sample.value))
            if family.type == "counter":
                point.start_time_unix_nano = start_ns
            point.attributes.extend(_kv(k, v) for k, v in sorted(sample.labels.items()))
            points.append(point)
        if samples:
            scope_metrics.metrics.append(metric)
    return request


class SelfTelemetryPusher:
    """A thread that POSTs the registry to an OTLP/HTTP metrics endpoint every ``interval_s``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        endpoint: str,
        interval_s: float,
        headers: Mapping[str, str],
        instance_id: str,
        timeout_s: float = 5.0,
    ) -> None:
        self._registry = registry
        self._endpoint = endpoint
        self._interval_s = interval_s
        self._headers = {"Content-Type": "application/x-protobuf", **headers}
        self._resource = {attrs.SERVICE_NAME: "otel-llm-collector", "service.instance.id": instance_id}
        self._timeout_s = timeout_s
        self._start_ns = time.time_ns()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logger = get_logger("service.self_telemetry")
        self._last_warning = 0.0
        self.pushed = 0
        self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-llm-self-telemetry", daemon=True)
        self._thread.start()

    def shutdown(self, timeout_s: float) -> None:
        """Stop the thread after one last push, so the final counts reach the backend."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout_s)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.push()
        self.push()

    def push(self) -> bool:
        """Send one snapshot; True when the backend accepted it."""
        body = registry_to_otlp(self._registry, self._resource, self._start_ns, time.time_ns())
        request = urllib.request.Request(
            self._endpoint, data=body.SerializeToString(), headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            self.failed += 1
            now = time.monotonic()
            if now - self._last_warning >= 60:
                self._last_warning = now
                event(
                    self._logger,
                    logging.WARNING,
                    "self-telemetry push failed",
                    endpoint=self._endpoint,
                    error=str(exc),
                    failures=self.failed,
                )
            return False
        self.pushed += 1
        return True
