"""``debug`` exporter: logs what reaches it, for tests and troubleshooting.

``basic`` logs one line per batch with its counts; ``normal`` adds the services and scopes seen;
``detailed`` also logs one line per span (service, scope, name, ids, duration, attribute count) or
per metric / log record. ``detailed`` is for a debugging session only: it is one line per item.
It keeps the totals it saw (``items``, ``batches`` per signal) so tests can assert on them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Literal

from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, LogsBatch, MetricsBatch, TraceBatch
from collector.logs import event

__all__ = ["FACTORY", "DebugExporter", "DebugExporterConfig"]


class DebugExporterConfig(ComponentConfig):
    """The ``debug`` exporter."""

    verbosity: Literal["basic", "normal", "detailed"] = Field(
        "basic",
        description="basic: one line per batch; normal: plus services; detailed: plus one line per item.",
    )


def _service(attributes: object) -> str:
    for kv in attributes:  # type: ignore[attr-defined]
        if kv.key == "service.name":
            return str(kv.value.string_value)
    return ""


class DebugExporter:
    """Logs each batch; thread-safe; never refuses."""

    def __init__(self, config: DebugExporterConfig, settings: CreateSettings) -> None:
        self._verbosity = config.verbosity
        self._logger = settings.logger
        self._id = str(settings.id)
        self._lock = threading.Lock()
        self.items: Counter[Signal] = Counter()
        self.batches: Counter[Signal] = Counter()

    def start(self, host: Host) -> None:
        return

    def shutdown(self, timeout_s: float) -> None:
        return

    def consume(self, batch: Batch) -> None:
        items = batch.items
        with self._lock:
            self.items[batch.signal] += items
            self.batches[batch.signal] += 1
        fields: dict[str, object] = {"exporter": self._id, "signal": batch.signal.value, "items": items}
        if isinstance(batch, TraceBatch):
            fields["resources"] = len(batch.request.resource_spans)
        if self._verbosity != "basic":
            fields["services"] = ",".join(sorted(self._services(batch)))
        event(self._logger, logging.INFO, "batch", **fields)
        if self._verbosity == "detailed":
            self._detail(batch)

    def _services(self, batch: Batch) -> set[str]:
        if isinstance(batch, TraceBatch):
            return {_service(rs.resource.attributes) for rs in batch.request.resource_spans}
        if isinstance(batch, MetricsBatch):
            return {_service(rm.resource.attributes) for rm in batch.request.resource_metrics}
        return {_service(rl.resource.attributes) for rl in batch.request.resource_logs}

    def _detail(self, batch: Batch) -> None:
        log = self._logger
        if isinstance(batch, TraceBatch):
            for rs in batch.request.resource_spans:
                service = _service(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        event(
                            log,
                            logging.INFO,
                            "span",
                            service=service,
                            scope=ss.scope.name,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            duration_ms=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
                            attributes=len(span.attributes),
                        )
        elif isinstance(batch, MetricsBatch):
            for rm in batch.request.resource_metrics:
                service = _service(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data") or ""
                        points = len(getattr(metric, kind).data_points) if kind else 0
                        event(
                            log,
                            logging.INFO,
                            "metric",
                            service=service,
                            name=metric.name,
                            kind=kind,
                            points=points,
                        )
        elif isinstance(batch, LogsBatch):
            for rl in batch.request.resource_logs:
                service = _service(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        event(
                            log,
                            logging.INFO,
                            "log record",
                            service=service,
                            severity=record.severity_text or str(record.severity_number),
                            body=str(record.body.string_value)[:200],
                        )


def _create(config: DebugExporterConfig, settings: CreateSettings) -> DebugExporter:
    return DebugExporter(config, settings)


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type_name="debug",
    config_type=DebugExporterConfig,
    create=_create,
    description="Logs batches (and with verbosity detailed, each item) for troubleshooting.",
)
