"""Export rules as Prometheus alerting rules, for teams that alert in Prometheus.

A rule exports when its signal has a PromQL form over the derived metrics the collector exposes
(the ``prometheus`` exporter's names, e.g. ``gen_ai_client_operation_duration_seconds_bucket``) or
the rule sets ``promql``, and its detector is one PromQL can state: ``threshold`` (``expr > 5``),
``ratio`` (``expr / avg_over_time(expr[1h:1m]) > 3``) and ``zscore`` without seasonality (a subquery
mean and standard deviation). ``ewma`` and ``cusum`` keep state between evaluations that PromQL has
no form for; they are listed as skipped. Pending, ``for`` and ``keep_firing_for`` map one to one;
the cooldown and minimum samples do not exist in Prometheus and are dropped (noted in the output).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from collector.alerting.detectors import RatioConfig, ThresholdConfig, ZScoreConfig
from collector.alerting.engine import label_name
from collector.alerting.rules import RuleConfig
from collector.durations import format_duration
from otel_llm.conventions import metrics as m

__all__ = ["export_prometheus_rules", "signal_promql", "write_prometheus_rules"]


def _family(name: str) -> str:
    from collector.metrics import metric_family_name

    spec = m.METRICS[name]
    return str(metric_family_name(name, spec.unit, spec.instrument))


def signal_promql(signal: str, by: Sequence[str], window_s: float) -> str | None:
    """PromQL for a built-in signal aggregated ``by`` the given labels, or ``None`` if it has none."""
    w = format_duration(window_s)
    groups = ", ".join(by)
    by_clause = f" by ({groups})" if groups else ""
    le_clause = f" by (le, {groups})" if groups else " by (le)"

    def rate(family: str, selector: str = "") -> str:
        return f"sum{by_clause} (rate({family}{selector}[{w}]))"

    requests = _family(m.OTEL_LLM_REQUESTS)
    errors = _family(m.OTEL_LLM_ERRORS)
    duration = _family(m.GEN_AI_CLIENT_OPERATION_DURATION)
    ttft = _family(m.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK)
    if signal == "requests_per_minute":
        return f"60 * {rate(requests)}"
    if signal == "requests":
        return f"sum{by_clause} (increase({requests}[{w}]))"
    if signal == "error_rate":
        return f"{rate(errors)} / {rate(requests)}"
    if signal in ("error_rate_4xx", "error_rate_5xx"):
        selector = '{error_type=~"' + signal[-3] + '[0-9][0-9]"}'
        return f"{rate(errors, selector)} / {rate(requests)}"
    if signal.startswith("error_rate:"):
        value = signal.partition(":")[2].replace("\\", "\\\\").replace('"', '\\"')
        selector = '{error_type="' + value + '"}'
        return f"{rate(errors, selector)} / {rate(requests)}"
    for prefix, family in (("latency_", duration), ("ttft_", ttft)):
        if signal.startswith(prefix):
            q = {"p50": "0.5", "p95": "0.95", "p99": "0.99"}[signal.split("_")[1]]
            return f"histogram_quantile({q}, sum{le_clause} (rate({family}_bucket[{w}])))"
    tokens = _family(m.GEN_AI_CLIENT_TOKEN_USAGE)
    cost = _family(m.OTEL_LLM_COST)
    if signal == "tokens_per_request":
        return f"{rate(tokens + '_sum')} / {rate(requests)}"
    if signal == "tokens_per_minute":
        return f"60 * {rate(tokens + '_sum')}"
    if signal == "cost_per_request":
        return f"{rate(cost)} / {rate(requests)}"
    if signal == "cost_per_minute":
        return f"60 * {rate(cost)}"
    if signal == "quality_score":
        score = _family(m.OTEL_LLM_EVALUATION_SCORE)
        return f"{rate(score + '_sum')} / {rate(score + '_count')}"
    if signal == "drift_state":
        return f"max{by_clause} ({_family(m.OTEL_LLM_DRIFT_STATE)})"
    return None


def _condition(rule: RuleConfig, expr: str, interval: str) -> str | None:
    d = rule.detector
    if isinstance(d, ThresholdConfig):
        return f"({expr}) > {d.above:g}" if d.above is not None else f"({expr}) < {d.below:g}"
    if isinstance(d, RatioConfig):
        return f"({expr}) / avg_over_time(({expr})[{format_duration(d.window)}:{interval}]) > {d.above:g}"
    if isinstance(d, ZScoreConfig) and d.seasonality == "none" and not d.log:
        span = f"[{format_duration(d.window)}:{interval}]"
        z = f"(({expr}) - avg_over_time(({expr}){span})) / stddev_over_time(({expr}){span})"
        if d.direction == "up":
            return f"{z} > {d.k:g}"
        if d.direction == "down":
            return f"{z} < -{d.k:g}"
        return f"abs({z}) > {d.k:g}"
    return None


def export_prometheus_rules(
    rules: Sequence[RuleConfig], group_by: Sequence[str], interval_s: float
) -> tuple[dict[str, Any], list[str]]:
    """(rules document, skipped rules with the reason) for a Prometheus ``rule_files`` entry."""
    interval = format_duration(interval_s)
    exported: list[dict[str, Any]] = []
    skipped: list[str] = []
    for rule in rules:
        if not rule.enabled:
            continue
        labels = [label_name(d) for d in (rule.group_by if rule.group_by is not None else group_by)]
        expr = rule.promql or signal_promql(rule.signal, labels, rule.window or interval_s)
        if expr is None:
            skipped.append(f"{rule.name}: signal {rule.signal} has no PromQL form (set `promql`)")
            continue
        condition = _condition(rule, expr, interval)
        if condition is None:
            skipped.append(f"{rule.name}: the {rule.detector.type} detector has no PromQL form")
            continue
        entry: dict[str, Any] = {"alert": rule.name, "expr": condition}
        if rule.for_:
            entry["for"] = format_duration(rule.for_)
        if rule.keep_firing_for:
            entry["keep_firing_for"] = format_duration(rule.keep_firing_for)
        entry["labels"] = {"severity": rule.severity, **rule.labels}
        # The expression's value is the signal for a threshold and the score for the others.
        fill = {"value": "{{ $value }}", "score": "{{ $value }}"}
        fill["value" if rule.detector.type != "threshold" else "score"] = "?"
        fill.update(baseline="?", rule=rule.name, signal=rule.signal)
        annotations = dict(rule.annotations)
        for key, text in fill.items():
            annotations = {k: v.replace("{" + key + "}", text) for k, v in annotations.items()}
        for label in labels:
            annotations = {
                k: v.replace("{" + label + "}", "{{ $labels." + label + " }}") for k, v in annotations.items()
            }
        if annotations:
            entry["annotations"] = annotations
        exported.append(entry)
    document = {"groups": [{"name": "otel-llm", "interval": interval, "rules": exported}]}
    return document, skipped


def write_prometheus_rules(
    path: str | Path, rules: Sequence[RuleConfig], group_by: Sequence[str], interval_s: float
) -> list[str]:
    """Write the exported rules to ``path`` (atomically); returns the skipped rules."""
    document, skipped = export_prometheus_rules(rules, group_by, interval_s)
    header = "# Generated by otel-llm from the collector's alert rules; edit those instead.\n"
    if skipped:
        header += "".join(f"# skipped: {line}\n" for line in skipped)
    header += "# Not exported: cooldown and min_samples (Prometheus has no equivalent).\n"
    target = Path(path)
    temp = target.with_suffix(target.suffix + ".tmp")
    temp.write_text(header + yaml.safe_dump(document, sort_keys=False, width=1000), encoding="utf-8")
    temp.replace(target)
    return skipped
