"""Prometheus naming and the text exposition format (0.0.4) for store snapshots.

Names follow the OpenTelemetry-to-Prometheus compatibility rules: characters outside
``[a-zA-Z0-9_:]`` become ``_``, the unit is appended as a word (``s`` → ``_seconds``, ``USD`` → ``_usd``,
curly-brace annotations such as ``{token}`` are dropped, ``1`` becomes ``_ratio`` on gauges only), and
monotonic counters end in ``_total``. Histograms expose ``_bucket{le=...}`` (cumulative), ``_sum`` and
``_count``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from collector.metrics._store import InstrumentSnapshot, MetricStore, PointSnapshot
from otel_llm.conventions import attributes as attrs

__all__ = ["format_value", "iter_samples", "label_name", "metric_family_name", "render_text", "unit_suffix"]

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]+")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]+")
_MULTI_UNDERSCORE = re.compile(r"__+")
_UNIT_WORDS = {
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "min": "minutes",
    "h": "hours",
    "d": "days",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "bit": "bits",
    "%": "percent",
    "Hz": "hertz",
    "USD": "usd",
    "EUR": "eur",
}
_PER_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


def unit_suffix(unit: str, kind: str) -> str:
    """The word a unit adds to a Prometheus name; empty for annotations like ``{token}``."""
    unit = re.sub(r"\{[^}]*\}", "", unit).strip()
    if not unit:
        return ""
    if unit == "1":
        return "ratio" if kind == "gauge" else ""
    if "/" in unit:
        num, _, den = unit.partition("/")
        left = _UNIT_WORDS.get(num, num)
        right = _PER_WORDS.get(den, _UNIT_WORDS.get(den, den))
        return f"{left}_per_{right}" if left else f"per_{right}"
    return _UNIT_WORDS.get(unit, unit)


def metric_family_name(name: str, unit: str, kind: str) -> str:
    """Prometheus metric family name, with unit and (counters) ``_total`` suffixes."""
    base = _MULTI_UNDERSCORE.sub("_", _INVALID_NAME.sub("_", name)).strip("_") or "_"
    if base[0].isdigit():
        base = "_" + base
    suffix = _INVALID_NAME.sub("_", unit_suffix(unit, kind))
    if suffix and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    if kind == "counter" and not base.endswith("_total"):
        base += "_total"
    return base


def label_name(key: str) -> str:
    """Prometheus label name for an attribute key (``gen_ai.request.model`` → ``gen_ai_request_model``)."""
    out = _MULTI_UNDERSCORE.sub("_", _INVALID_LABEL.sub("_", key)) or "_"
    if out[0].isdigit():
        out = "key_" + out
    return out


_INSTANCE_LABEL = label_name(attrs.OTEL_LLM_INSTANCE_ID)


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _label_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_value(value)
    return str(value)


def format_labels(pairs: Iterable[tuple[str, str]]) -> str:
    """``{k="v",...}`` with the values escaped; empty for no labels."""
    body = ",".join(f'{k}="{_escape_value(v)}"' for k, v in pairs)
    return "{" + body + "}" if body else ""


def histogram_lines(
    family: str,
    labels: Sequence[tuple[str, str]],
    bounds: Sequence[str],
    bucket_counts: Iterable[int],
    total: float,
    count: int,
    *,
    strict: bool = True,
) -> list[str]:
    """The ``_bucket`` (cumulative, ending at ``+Inf``), ``_sum`` and ``_count`` lines of one series.

    ``bounds`` are the finite bounds, already formatted. With ``strict=False`` a count list longer or
    shorter than the bounds is cut to the shorter (received data); otherwise a mismatch raises.
    """
    lines: list[str] = []
    running = 0
    for bound, bucket in zip([*bounds, "+Inf"], bucket_counts, strict=strict):
        running += bucket
        lines.append(f"{family}_bucket{format_labels([*labels, ('le', bound)])} {running}")
    lines.append(f"{family}_sum{format_labels(labels)} {format_value(total)}")
    lines.append(f"{family}_count{format_labels(labels)} {count}")
    return lines


def _family(snap: InstrumentSnapshot, namespace: str) -> str:
    family = metric_family_name(snap.name, snap.unit, snap.kind)
    return f"{label_name(namespace)}_{family}" if namespace else family


def _point_labels(store: MetricStore, point: PointSnapshot, resource_labels: bool) -> list[tuple[str, str]]:
    """A series' labels: resource attributes (optional), then its own attributes, then the instance id."""
    pairs: dict[str, str] = {}
    if resource_labels:
        for key, text in store.resource_attributes(point.resource):
            if text:
                pairs[label_name(key)] = text
    for key, value in point.attributes:
        if value is None or value == "":
            continue
        pairs[label_name(key)] = _label_text(value)
    if store.instance_id:
        pairs[_INSTANCE_LABEL] = store.instance_id
    return list(pairs.items())


def render_text(
    store: MetricStore,
    snapshots: Sequence[InstrumentSnapshot],
    *,
    resource_labels: bool = True,
    namespace: str = "",
) -> str:
    """Text exposition of ``snapshots``.

    With ``resource_labels`` the series' resource attributes become labels (the point's own attribute
    wins on a clash); the store keeps only a few key attributes per resource, so this stays small.
    """
    lines: list[str] = []
    for snap in snapshots:
        family = _family(snap, namespace)
        prom_type = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}[snap.kind]
        lines.append(f"# HELP {family} {_escape_help(snap.description or snap.name)}")
        lines.append(f"# TYPE {family} {prom_type}")
        bounds = [format_value(b) for b in snap.buckets]
        for point in snap.points:
            items = _point_labels(store, point, resource_labels)
            if snap.kind == "histogram":
                lines += histogram_lines(family, items, bounds, point.bucket_counts, point.total, point.count)
            else:
                lines.append(f"{family}{format_labels(items)} {format_value(point.value)}")
    lines.append("")
    return "\n".join(lines)


def iter_samples(
    store: MetricStore,
    snapshots: Sequence[InstrumentSnapshot],
    *,
    resource_labels: bool = True,
    namespace: str = "",
) -> Iterable[tuple[str, list[tuple[str, str]], float]]:
    """(sample name, labels without ``__name__``, value) for every sample :func:`render_text` would write."""
    for snap in snapshots:
        family = _family(snap, namespace)
        bounds = [format_value(b) for b in snap.buckets]
        for point in snap.points:
            items = _point_labels(store, point, resource_labels)
            if snap.kind == "histogram":
                running = 0
                for bound, count in zip([*bounds, "+Inf"], point.bucket_counts, strict=True):
                    running += count
                    yield f"{family}_bucket", [*items, ("le", bound)], float(running)
                yield f"{family}_sum", items, point.total
                yield f"{family}_count", items, float(point.count)
            else:
                yield family, items, point.value
