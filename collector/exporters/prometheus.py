"""``prometheus``: a scrape endpoint for the derived metrics and for OTLP metrics of its pipelines.

Serves ``GET <path>`` (default ``http://127.0.0.1:9464/metrics``) in the text exposition format:

- the shared derived-metric store (``genai_metrics``, ``cost``), read at scrape time, so the exporter
  works in any pipeline (a traces pipeline is the usual place: its batches are ignored);
- OTLP metrics that reach it in a metrics pipeline (the applications' own metrics): cumulative points
  replace, delta points add up, gauges keep the last value; exponential histograms and summaries are
  skipped. They expire after ``metric_expiration`` without an update. Batches of our own derived
  metrics (from a ``derived_metrics`` receiver of this service) are ignored, as the store is served
  directly.

Names follow the OpenTelemetry-to-Prometheus rules (:mod:`collector.metrics._prometheus`):
``gen_ai_client_operation_duration_seconds_bucket``, ``otel_llm_cost_usd_total``. With
``resource_to_telemetry_conversion`` (default on) a series' resource key attributes become labels;
the store keeps only a few (``service.name``, ``service.namespace``, ...), so this adds little.

With ``service::workers`` > 1 every worker is a separate process with its own store, so each needs
its own scrape endpoint: the runner sets ``collector.runner.worker_index`` in the host's shared
state, and worker *i* listens on ``endpoint``'s port + *i* (9464, 9465, ...; port 0 stays 0, any
free port). Scrape every worker; each page carries its worker's ``otel_llm_instance_id``.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from pydantic import Field

from collector import _httpserver
from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, MetricsBatch
from collector.durations import Duration
from collector.errors import ComponentError
from collector.metrics import (
    SCOPE_NAME,
    MetricStore,
    label_name,
    metric_family_name,
    render_text,
    shared_store,
)
from collector.metrics._prometheus import format_labels, format_value, histogram_lines
from collector.service import split_endpoint
from otel_llm.conventions import attributes as attrs

__all__ = ["FACTORY", "WORKER_INDEX_KEY", "PrometheusExporter", "PrometheusExporterConfig", "ReceivedMetrics"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
# Resource attributes kept as labels on received metrics (others would fork series on restarts).
#: Set by :mod:`collector.runner` in each worker process (0, 1, ...); absent with one process.
WORKER_INDEX_KEY = "collector.runner.worker_index"
_RESOURCE_LABELS = ("service.name", "service.namespace", "service.instance.id", "deployment.environment.name")


class PrometheusExporterConfig(ComponentConfig):
    """``exporters::prometheus``."""

    endpoint: str = Field(
        "127.0.0.1:9464",
        description="host:port the scrape endpoint listens on; with `service::workers` > 1 worker i "
        "listens on port + i (port 0: any free port).",
    )
    path: str = Field("/metrics", pattern="^/", description="HTTP path of the scrape endpoint.")
    namespace: str = Field("", description="Prefix added to every metric name (`<namespace>_`).")
    resource_to_telemetry_conversion: bool = Field(
        True, description="Add each series' resource key attributes as labels."
    )
    metric_expiration: Duration = Field(
        300.0, gt=0, description="Drop a received OTLP series after this long without an update."
    )

    def problems(self) -> list[tuple[str, str]]:
        try:
            split_endpoint(self.endpoint)
        except ValueError as exc:
            return [("endpoint", str(exc))]
        return []


def _text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None or kind in ("array_value", "kvlist_value", "bytes_value"):
        return ""
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    return str(getattr(value, kind))


class ReceivedMetrics:
    """Latest state of OTLP metrics received in metrics pipelines, rendered as exposition text."""

    def __init__(self, expiration_s: float, namespace: str = "") -> None:
        self._lock = threading.Lock()
        self._expiration_ns = int(expiration_s * 1e9)
        self._namespace = namespace
        # family -> (type, help)
        self._families: dict[str, tuple[str, str]] = {}
        # (family, labels) -> [last update ns, value] or [last ns, count, sum, bounds, bucket counts]
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]] = {}

    def ingest(self, request: ExportMetricsServiceRequest, skip_instance: str) -> None:
        now = time.time_ns()
        with self._lock:
            for rm in request.resource_metrics:
                base = [
                    (label_name(kv.key), _text(kv.value))
                    for kv in rm.resource.attributes
                    if kv.key in _RESOURCE_LABELS and _text(kv.value)
                ]
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if sm.scope.name == SCOPE_NAME and _from_instance(metric, skip_instance):
                            continue
                        self._ingest_metric(metric, base, now)

    def _ingest_metric(self, metric: Any, base: list[tuple[str, str]], now: int) -> None:
        kind = metric.WhichOneof("data")
        if kind == "sum":
            prom_kind = "counter" if metric.sum.is_monotonic else "gauge"
            points, delta = metric.sum.data_points, metric.sum.aggregation_temporality == _DELTA
        elif kind == "gauge":
            prom_kind, points, delta = "gauge", metric.gauge.data_points, False
        elif kind == "histogram":
            prom_kind = "histogram"
            points, delta = metric.histogram.data_points, metric.histogram.aggregation_temporality == _DELTA
        else:
            return  # exponential histograms and summaries are not exposed
        family = metric_family_name(metric.name, metric.unit, prom_kind)
        if self._namespace:
            family = f"{label_name(self._namespace)}_{family}"
        known = self._families.get(family)
        if known is not None and known[0] != prom_kind:
            return  # same name, different type: Prometheus cannot hold both
        self._families[family] = (prom_kind, metric.description or metric.name)
        for point in points:
            labels = dict(base)
            for kv in point.attributes:
                text = _text(kv.value)
                if text:
                    labels[label_name(kv.key)] = text
            key = (family, tuple(sorted(labels.items())))
            state = self._series.get(key)
            if prom_kind == "histogram":
                counts = list(point.bucket_counts)
                bounds = tuple(point.explicit_bounds)
                if state is None or not delta or state[3] != bounds:
                    self._series[key] = [now, point.count, point.sum, bounds, counts]
                else:
                    state[0] = now
                    state[1] += point.count
                    state[2] += point.sum
                    state[4] = [a + b for a, b in zip(state[4], counts, strict=False)]
            else:
                value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
                if state is None or not delta:
                    self._series[key] = [now, value]
                else:
                    state[0] = now
                    state[1] += value

    def render(self, exclude: frozenset[str] = frozenset()) -> str:
        """Exposition text; families in ``exclude`` (already served from the store) are left out."""
        cutoff = time.time_ns() - self._expiration_ns
        lines: list[str] = []
        with self._lock:
            for key in [key for key, state in self._series.items() if state[0] < cutoff]:
                del self._series[key]
            by_family: dict[str, list[tuple[tuple[tuple[str, str], ...], list[Any]]]] = {}
            for (family, labels), state in self._series.items():
                by_family.setdefault(family, []).append((labels, state))
            for family, series in by_family.items():
                if family in exclude:
                    continue
                prom_kind, help_text = self._families[family]
                lines.append(
                    f"# HELP {family} {help_text.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}"
                )
                lines.append(f"# TYPE {family} {prom_kind}")
                for labels, state in series:
                    if prom_kind == "histogram":
                        bounds = [format_value(b) for b in state[3]]
                        lines += histogram_lines(
                            family, labels, bounds, state[4], state[2], state[1], strict=False
                        )
                    else:
                        lines.append(f"{family}{format_labels(labels)} {format_value(state[1])}")
        return "\n".join(lines) + ("\n" if lines else "")


def _from_instance(metric: Any, instance: str) -> bool:
    kind = metric.WhichOneof("data")
    points = getattr(metric, kind).data_points if kind else []
    for point in points:
        for kv in point.attributes:
            if kv.key == attrs.OTEL_LLM_INSTANCE_ID:
                return bool(kv.value.string_value == instance)
    return False


class PrometheusExporter:
    """The scrape endpoint; ``consume`` takes metrics batches, ``render`` builds the page."""

    def __init__(self, config: PrometheusExporterConfig, settings: CreateSettings) -> None:
        self.config = config
        self.settings = settings
        self.store: MetricStore | None = None
        self.received = ReceivedMetrics(config.metric_expiration, config.namespace)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._server.server_address[1] if self._server is not None else 0

    def start(self, host: Host) -> None:
        self.store = shared_store(host)
        address, port = split_endpoint(self.config.endpoint)
        worker = host.shared.get(WORKER_INDEX_KEY)
        if isinstance(worker, int) and port != 0:
            port += worker  # workers do not share this port: each serves its own store
            if port > 65535:
                raise ComponentError(
                    f"exporters::{self.settings.id}: worker {worker} would listen on port {port} "
                    f"({self.config.endpoint} + worker index), above 65535"
                )
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != exporter.config.path:
                    self.send_error(404, "not found")
                    return
                body = exporter.render().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", _CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
                return

        self._server = _httpserver.bind(
            lambda: ThreadingHTTPServer((address, port), Handler),
            f"exporters::{self.settings.id}",
            f"{address}:{port}",
        )
        self._thread = _httpserver.serve(self._server, f"prometheus[{self.settings.id}]")

    def render(self) -> str:
        """The exposition page: derived metrics, then received ones."""
        text = ""
        served: set[str] = set()
        if self.store is not None:
            snapshots = self.store.snapshot()
            text = render_text(
                self.store,
                snapshots,
                resource_labels=self.config.resource_to_telemetry_conversion,
                namespace=self.config.namespace,
            )
            prefix = f"{label_name(self.config.namespace)}_" if self.config.namespace else ""
            served = {prefix + metric_family_name(s.name, s.unit, s.kind) for s in snapshots}
        # A family both derived and received (during client_metrics: auto's first interval) is
        # served from the store only: one family cannot appear twice on a page.
        return text + self.received.render(frozenset(served))

    def consume(self, batch: Batch) -> None:
        if isinstance(batch, MetricsBatch):
            self.received.ingest(batch.request, self.store.instance_id if self.store is not None else "")

    def shutdown(self, timeout_s: float) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        _httpserver.stop(server)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def _create(config: PrometheusExporterConfig, settings: CreateSettings) -> PrometheusExporter:
    return PrometheusExporter(config, settings)


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type_name="prometheus",
    config_type=PrometheusExporterConfig,
    create=_create,
    signals=frozenset({Signal.TRACES, Signal.METRICS}),
    description="Prometheus scrape endpoint for derived GenAI metrics and received OTLP metrics.",
)
