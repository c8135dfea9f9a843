"""``derived_metrics``: feeds the derived-metric store into metrics pipelines, so OTLP exporters send it.

The ``genai_metrics`` and ``cost`` processors write into the service's shared store; this receiver
snapshots it every ``interval`` into an OTLP ``MetricsBatch`` (one ``ResourceMetrics`` per source
resource, every point tagged with ``otel_llm.instance.id``) and hands it to each metrics pipeline that
names it. ``temporality: delta`` sends only the change since this receiver's previous snapshot, with
start times chained from one export to the next; ``cumulative`` (default) sends running totals whose
start time is the series' first point. On shutdown it sends one last snapshot, so the final interval
is not lost; the processors stop before it does.

    receivers:
      derived_metrics: {interval: 60s, temporality: cumulative}
    service:
      pipelines:
        metrics/derived: {receivers: [derived_metrics], exporters: [otlp]}

A failed delivery (a full exporter queue) is logged and, for delta, lost: cumulative totals carry
it into the next snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from collector.component import ComponentConfig, Consumer, CreateSettings, Factory, Host, Kind, Signal
from collector.data import MetricsBatch
from collector.durations import Duration
from collector.logs import event
from collector.metrics import DeltaTracker, MetricStore, shared_store, snapshot_to_otlp

__all__ = ["FACTORY", "DerivedMetricsReceiver", "DerivedMetricsReceiverConfig"]


class DerivedMetricsReceiverConfig(ComponentConfig):
    """``receivers::derived_metrics``."""

    interval: Duration = Field(60.0, gt=0, description="How often the store is snapshotted and sent.")
    temporality: Literal["cumulative", "delta"] = Field(
        "cumulative", description="`cumulative` running totals, or `delta` changes since the last send."
    )


class DerivedMetricsReceiver:
    """Snapshots the shared store on a timer thread; ``flush()`` sends one snapshot now."""

    def __init__(self, config: DerivedMetricsReceiverConfig, settings: CreateSettings) -> None:
        self.config = config
        self.settings = settings
        self._consumer: Consumer | None = None
        self._store: MetricStore | None = None
        self._delta = DeltaTracker() if config.temporality == "delta" else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()

    def bind(self, consumers: Mapping[Signal, Consumer]) -> None:
        self._consumer = consumers.get(Signal.METRICS)

    def start(self, host: Host) -> None:
        self._store = shared_store(host)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"derived_metrics[{self.settings.id}]", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval):
            self.flush()

    def flush(self) -> int:
        """Send one snapshot downstream; returns the data points sent (0 when empty or failed)."""
        store, consumer = self._store, self._consumer
        if store is None or consumer is None:
            return 0
        with self._flush_lock:
            snapshots = store.snapshot()
            if self._delta is not None:
                snapshots = self._delta.cut(snapshots)
            if not snapshots:
                return 0
            batch = MetricsBatch(snapshot_to_otlp(store, snapshots, delta=self._delta is not None))
            try:
                consumer.consume(batch)
            except Exception as exc:  # the timer must survive a refusing pipeline; next interval retries
                event(
                    self.settings.logger,
                    logging.WARNING,
                    "derived metrics not delivered",
                    receiver=str(self.settings.id),
                    points=batch.items,
                    error=str(exc),
                )
                return 0
            return batch.items

    def shutdown(self, timeout_s: float) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout_s)
        self.flush()


def _create(config: DerivedMetricsReceiverConfig, settings: CreateSettings) -> DerivedMetricsReceiver:
    return DerivedMetricsReceiver(config, settings)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type_name="derived_metrics",
    config_type=DerivedMetricsReceiverConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    description="Sends the metrics derived by genai_metrics and cost into metrics pipelines, on an interval.",
)
