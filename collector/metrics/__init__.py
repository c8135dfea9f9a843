"""Derived metrics: the shared store, its OTLP snapshot and its Prometheus exposition.

Processors (``genai_metrics``, ``cost``) write into one :class:`MetricStore` per service, found with
``host.get_shared(STORE_KEY, ...)`` (use :func:`shared_store`); exporters (``prometheus``,
``prometheusremotewrite``) and the ``derived_metrics`` receiver read it.
"""

from __future__ import annotations

from typing import Any

from collector.metrics._otlp import SCOPE_NAME, DeltaTracker, snapshot_to_otlp
from collector.metrics._prometheus import (
    iter_samples,
    label_name,
    metric_family_name,
    render_text,
    unit_suffix,
)
from collector.metrics._store import (
    OVERFLOW_ATTRIBUTE,
    OVERFLOW_KEY,
    STORE_KEY,
    Counter,
    Gauge,
    Histogram,
    InstrumentSnapshot,
    MetricStore,
    PointSnapshot,
    ResourceKey,
    SeriesKey,
)

__all__ = [
    "OVERFLOW_ATTRIBUTE",
    "OVERFLOW_KEY",
    "SCOPE_NAME",
    "STORE_KEY",
    "Counter",
    "DeltaTracker",
    "Gauge",
    "Histogram",
    "InstrumentSnapshot",
    "MetricStore",
    "PointSnapshot",
    "ResourceKey",
    "SeriesKey",
    "iter_samples",
    "label_name",
    "metric_family_name",
    "render_text",
    "shared_store",
    "snapshot_to_otlp",
    "unit_suffix",
]

INSTANCE_ID_KEY = "collector.service.instance_id"


def shared_store(host: Any) -> MetricStore:
    """The service's store, created on first use with the service's instance id."""
    store = host.get_shared(STORE_KEY, lambda: MetricStore(str(host.shared.get(INSTANCE_ID_KEY, ""))))
    assert isinstance(store, MetricStore)
    return store
