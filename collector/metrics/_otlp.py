"""Store snapshots as OTLP: one ``ResourceMetrics`` per source resource, cumulative or delta.

Cumulative points carry the series' own start time (its first point, or its return after expiry), so a
reader sees a reset exactly when the store lost state. Delta points are cut from the cumulative state
by a :class:`DeltaTracker` that belongs to one reader: several readers (a Prometheus scrape and an OTLP
push with delta temporality) read the same store without disturbing each other. Each delta point
starts where the reader's previous point for that series ended.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)

from collector.metrics._store import InstrumentSnapshot, MetricStore, PointSnapshot, ResourceKey
from otel_llm.conventions import attributes as attrs

__all__ = ["SCOPE_NAME", "DeltaTracker", "snapshot_to_otlp"]

#: Instrumentation scope of every derived metric.
SCOPE_NAME = "otel_llm.collector"

_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA

_SeriesId = tuple[str, ResourceKey, tuple[tuple[str, object], ...]]


def _any(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def _attributes(point: PointSnapshot, instance: KeyValue | None) -> list[KeyValue]:
    out = [KeyValue(key=k, value=_any(v)) for k, v in point.attributes if v is not None and v != ""]
    if instance is not None:
        out.append(instance)
    return out


class DeltaTracker:
    """What one delta reader saw last, per series; turns cumulative snapshots into deltas.

    Series that disappear from the store (expired) are forgotten on the next call, so the tracker is
    never larger than the store.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # series -> (end time of the last delta, count or value, sum, bucket counts)
        self._last: dict[_SeriesId, tuple[int, float, float, tuple[int, ...]]] = {}

    def cut(self, snapshots: Sequence[InstrumentSnapshot]) -> list[InstrumentSnapshot]:
        """Snapshots whose points hold the change since this tracker's previous call."""
        with self._lock:
            seen: set[_SeriesId] = set()
            out: list[InstrumentSnapshot] = []
            for snap in snapshots:
                if snap.kind == "gauge":
                    out.append(snap)
                    continue
                points: list[PointSnapshot] = []
                for point in snap.points:
                    sid = (snap.name, point.resource, point.attributes)
                    seen.add(sid)
                    previous = self._last.get(sid)
                    now = snap.time_ns
                    # An unchanged series sends nothing and keeps its previous end time, so the next
                    # point starts where the last one sent ended: reported intervals stay contiguous.
                    changed = previous is None or previous[0] < point.start_ns
                    if snap.kind == "counter":
                        if changed or point.value != previous[1]:  # type: ignore[index]
                            self._last[sid] = (now, point.value, 0.0, ())
                        if previous is None or previous[0] < point.start_ns:
                            points.append(point)  # new or restarted series: all of it is new
                        elif point.value != previous[1]:
                            points.append(
                                _replace(point, start_ns=previous[0], value=point.value - previous[1])
                            )
                    else:
                        if changed or point.count != previous[1]:  # type: ignore[index]
                            self._last[sid] = (now, float(point.count), point.total, point.bucket_counts)
                        if previous is None or previous[0] < point.start_ns:
                            points.append(point)
                        elif point.count != previous[1]:
                            points.append(
                                _replace(
                                    point,
                                    start_ns=previous[0],
                                    count=point.count - int(previous[1]),
                                    total=point.total - previous[2],
                                    # min and max are not known for the interval alone; left out on export.
                                    minimum=float("nan"),
                                    maximum=float("nan"),
                                    bucket_counts=tuple(
                                        a - b for a, b in zip(point.bucket_counts, previous[3], strict=True)
                                    ),
                                )
                            )
                if points:
                    out.append(_replace_snapshot(snap, tuple(points)))
            for sid in [sid for sid in self._last if sid not in seen]:
                del self._last[sid]
            return out


def _replace(point: PointSnapshot, **changes: object) -> PointSnapshot:
    fields = {
        "resource": point.resource,
        "attributes": point.attributes,
        "start_ns": point.start_ns,
        "value": point.value,
        "count": point.count,
        "total": point.total,
        "minimum": point.minimum,
        "maximum": point.maximum,
        "bucket_counts": point.bucket_counts,
    }
    fields.update(changes)
    return PointSnapshot(**fields)  # type: ignore[arg-type]


def _replace_snapshot(snap: InstrumentSnapshot, points: tuple[PointSnapshot, ...]) -> InstrumentSnapshot:
    return InstrumentSnapshot(
        snap.name, snap.kind, snap.unit, snap.description, snap.buckets, points, snap.time_ns
    )


def snapshot_to_otlp(
    store: MetricStore,
    snapshots: Sequence[InstrumentSnapshot],
    *,
    delta: bool = False,
    scope_version: str = "",
) -> ExportMetricsServiceRequest:
    """An export request with one ``ResourceMetrics`` per resource key and one metric per instrument.

    ``delta`` only labels sums and histograms as delta; cut the snapshots with a :class:`DeltaTracker`
    first. Every point gets ``otel_llm.instance.id`` when the store has an instance id.
    """
    temporality = _DELTA if delta else _CUMULATIVE
    instance = (
        KeyValue(key=attrs.OTEL_LLM_INSTANCE_ID, value=AnyValue(string_value=store.instance_id))
        if store.instance_id
        else None
    )
    by_resource: dict[ResourceKey, dict[str, Metric]] = defaultdict(dict)
    for snap in snapshots:
        for point in snap.points:
            metrics = by_resource[point.resource]
            metric = metrics.get(snap.name)
            if metric is None:
                metric = metrics[snap.name] = Metric(
                    name=snap.name, unit=snap.unit, description=snap.description
                )
                if snap.kind == "counter":
                    metric.sum.is_monotonic = True
                    metric.sum.aggregation_temporality = temporality
                elif snap.kind == "histogram":
                    metric.histogram.aggregation_temporality = temporality
                else:
                    metric.gauge.SetInParent()
            attributes = _attributes(point, instance)
            if snap.kind == "histogram":
                hp = HistogramDataPoint(
                    start_time_unix_nano=point.start_ns,
                    time_unix_nano=snap.time_ns,
                    count=point.count,
                    sum=point.total,
                    bucket_counts=point.bucket_counts,
                    explicit_bounds=snap.buckets,
                    attributes=attributes,
                )
                if point.count and point.minimum == point.minimum:  # NaN in delta cuts: unknown
                    hp.min = point.minimum
                    hp.max = point.maximum
                metric.histogram.data_points.append(hp)
            else:
                np = NumberDataPoint(
                    start_time_unix_nano=point.start_ns,
                    time_unix_nano=snap.time_ns,
                    as_double=point.value,
                    attributes=attributes,
                )
                (metric.sum if snap.kind == "counter" else metric.gauge).data_points.append(np)
    request = ExportMetricsServiceRequest()
    for resource_key, metrics in by_resource.items():
        rm: ResourceMetrics = request.resource_metrics.add()
        for key, value in store.resource_attributes(resource_key):
            rm.resource.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
        sm: ScopeMetrics = rm.scope_metrics.add()
        sm.scope.name = SCOPE_NAME
        sm.scope.version = scope_version
        sm.metrics.extend(metrics.values())
    return request
