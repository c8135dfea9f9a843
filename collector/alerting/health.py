"""Health score: 0 (down) to 100 (healthy) per service and model, from four components.

Each component maps a signal to 0..1, linearly between an "ok" and a "bad" level:

=========  ==========================  ===========================  ==========================
component  signal (over ``window``)    1.0 at or better than        0.0 at or worse than
=========  ==========================  ===========================  ==========================
errors     ``error_rate``              ``error_rate_ok`` (0.01)     ``error_rate_bad`` (0.2)
latency    ``latency_p95_s``           ``latency_target_s`` (5)     3 x ``latency_target_s``
quality    ``quality_score``           ``quality_ok`` (0.8)         ``quality_bad`` (0.5)
drift      ``drift_state``             0 (no drift)                 1 (drift)
=========  ==========================  ===========================  ==========================

The score is ``100 * sum(weight * component) / sum(weight)`` over the components that have data, so
a service without evaluations is scored on errors, latency and drift alone. The ``anomaly``
processor publishes it as ``otel_llm.health.score`` into the derived-metric store, and
``otel-llm health`` prints it as a table by scraping the ``prometheus`` exporter's endpoint.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from pydantic import Field

from collector.component import ComponentConfig
from collector.durations import Duration

__all__ = [
    "HealthSettings",
    "HealthWeights",
    "component_scores",
    "health_main",
    "health_score",
    "render_table",
]


class HealthWeights(ComponentConfig):
    """Relative weights of the components; they need not sum to 1."""

    errors: float = Field(0.4, ge=0, description="Weight of the error-rate component.")
    latency: float = Field(0.3, ge=0, description="Weight of the p95-latency component.")
    quality: float = Field(0.2, ge=0, description="Weight of the quality-score component.")
    drift: float = Field(0.1, ge=0, description="Weight of the drift component.")


class HealthSettings(ComponentConfig):
    """``processors::anomaly::health``."""

    enabled: bool = Field(True, description="Publish `otel_llm.health.score`.")
    window: Duration = Field(300.0, gt=0, description="Signal window the score is computed over.")
    weights: HealthWeights = Field(default_factory=HealthWeights, description="Component weights.")
    error_rate_ok: float = Field(0.01, ge=0, le=1, description="Error rate that still scores 1.")
    error_rate_bad: float = Field(0.2, gt=0, le=1, description="Error rate that scores 0.")
    latency_target_s: float = Field(5.0, gt=0, description="p95 latency that still scores 1; 0 at 3x.")
    quality_ok: float = Field(0.8, ge=0, le=1, description="Mean evaluation score that still scores 1.")
    quality_bad: float = Field(0.5, ge=0, le=1, description="Mean evaluation score that scores 0.")
    min_samples: int = Field(10, ge=1, description="Fewer spans in the window: no score.")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.error_rate_bad <= self.error_rate_ok:
            out.append(("error_rate_bad", f"expected a value > error_rate_ok ({self.error_rate_ok:g})"))
        if self.quality_bad >= self.quality_ok:
            out.append(("quality_bad", f"expected a value < quality_ok ({self.quality_ok:g})"))
        w = self.weights
        if w.errors + w.latency + w.quality + w.drift <= 0:
            out.append(("weights", "expected at least one weight > 0"))
        return out


def _linear(value: float, ok: float, bad: float) -> float:
    """1 at ``ok``, 0 at ``bad`` (either direction), clamped."""
    if ok == bad:
        return 1.0 if value == ok else 0.0
    return min(1.0, max(0.0, (value - bad) / (ok - bad)))


def component_scores(
    settings: HealthSettings,
    *,
    error_rate: float | None = None,
    latency_p95_s: float | None = None,
    quality: float | None = None,
    drift: float | None = None,
) -> dict[str, float]:
    """Each available component's 0..1 value."""
    out: dict[str, float] = {}
    if error_rate is not None and math.isfinite(error_rate):
        out["errors"] = _linear(error_rate, settings.error_rate_ok, settings.error_rate_bad)
    if latency_p95_s is not None and math.isfinite(latency_p95_s):
        out["latency"] = _linear(latency_p95_s, settings.latency_target_s, 3 * settings.latency_target_s)
    if quality is not None and math.isfinite(quality):
        out["quality"] = _linear(quality, settings.quality_ok, settings.quality_bad)
    if drift is not None and math.isfinite(drift):
        out["drift"] = _linear(drift, 0.0, 1.0)
    return out


def health_score(settings: HealthSettings, components: Mapping[str, float]) -> float | None:
    """0..100 from component values; ``None`` when no weighted component has data."""
    weights: dict[str, float] = settings.weights.model_dump()
    total = sum(weights[name] for name in components)
    if total <= 0:
        return None
    return float(100.0 * sum(weights[name] * value for name, value in components.items()) / total)


def render_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """A plain aligned text table."""
    widths = [max(len(col), *(len(row.get(col, "")) for row in rows)) for col in columns]
    lines = ["  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append(
            "  ".join(row.get(col, "").ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip()
        )
    return "\n".join(lines)


def _scrape(url: str, timeout_s: float) -> str:
    import httpx2

    response = httpx2.get(url, timeout=timeout_s)
    response.raise_for_status()
    return response.text


def health_rows(text: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(health rows, open alert rows) from a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    from collector.metrics import label_name, metric_family_name
    from otel_llm.conventions import attributes as attrs
    from otel_llm.conventions import metrics as m

    model, rule = label_name(attrs.GEN_AI_REQUEST_MODEL), label_name(attrs.OTEL_LLM_ALERT_RULE)
    state, severity = label_name(attrs.OTEL_LLM_ALERT_STATE), label_name(attrs.OTEL_LLM_ALERT_SEVERITY)

    health_name = metric_family_name(m.OTEL_LLM_HEALTH_SCORE, m.OTEL_LLM_HEALTH_SCORE_UNIT, "gauge")
    alert_name = metric_family_name(m.OTEL_LLM_ALERT_STATE, m.OTEL_LLM_ALERT_STATE_UNIT, "gauge")
    health: list[dict[str, str]] = []
    alerts: list[dict[str, str]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if sample.name == health_name:
                health.append(
                    {
                        "service": labels.get("service_name", ""),
                        "model": labels.get(model, ""),
                        "score": f"{sample.value:.0f}",
                    }
                )
            elif sample.name == alert_name and sample.value > 0:
                alerts.append(
                    {
                        "rule": labels.get(rule, ""),
                        "state": labels.get(state, ""),
                        "severity": labels.get(severity, ""),
                        "service": labels.get("service_name", ""),
                        "model": labels.get(model, ""),
                    }
                )
    health.sort(key=lambda row: (float(row["score"]), row["service"], row["model"]))
    return health, alerts


_USAGE = """usage: otel-llm health [--endpoint URL] [--timeout SECONDS]

Print the health score per service and model, and the open alerts, from a running collector's
`prometheus` exporter (default http://127.0.0.1:9464/metrics)."""


def health_main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``otel-llm health``: 0 when every score was read, 1 when the endpoint has none, 2 on usage errors."""
    stdout = out or sys.stdout
    stderr = err or sys.stderr
    endpoint = "http://127.0.0.1:9464/metrics"
    timeout_s = 5.0
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag in ("-h", "--help"):
            print(_USAGE, file=stdout)
            return 0
        if flag in ("--endpoint", "--timeout") and args:
            value = args.pop(0)
            if flag == "--endpoint":
                endpoint = value if "://" in value else f"http://{value}/metrics"
            else:
                try:
                    timeout_s = float(value)
                except ValueError:
                    print(f"otel-llm health: error: --timeout expects seconds, got {value!r}", file=stderr)
                    return 2
            continue
        print(f"otel-llm health: error: unexpected argument {flag!r} (see --help)", file=stderr)
        return 2
    try:
        text = _scrape(endpoint, timeout_s)
    except Exception as exc:
        print(f"otel-llm health: error: cannot read {endpoint}: {exc}", file=stderr)
        return 1
    health, alerts = health_rows(text)
    if not health:
        print(f"no health scores at {endpoint} (is the anomaly processor configured?)", file=stderr)
        return 1
    print(render_table(health, ("service", "model", "score")), file=stdout)
    if alerts:
        print("", file=stdout)
        print(render_table(alerts, ("rule", "state", "severity", "service", "model")), file=stdout)
    return 0
