"""Reads the collector's Prometheus endpoint back into a per-model summary table for the demo."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Summary", "SummaryRow", "histogram_quantile", "read_summary"]

_MODEL_LABEL = "gen_ai_request_model"


@dataclass
class SummaryRow:
    """What the collector derived for one model."""

    requests: float = 0.0
    errors: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost_usd: float = 0.0
    unpriced: float = 0.0
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def p95_s(self) -> float:
        return histogram_quantile(0.95, self.buckets)


@dataclass
class Summary:
    """Rows by model; empty when the endpoint had no GenAI metrics (yet)."""

    rows: dict[str, SummaryRow]
    error: str = ""

    def table(self) -> str:
        if self.error:
            return f"  (could not read the collector's metrics: {self.error})"
        if not self.rows:
            return "  (no GenAI metrics yet)"
        header = f"  {'model':<28} {'requests':>8} {'errors':>6} {'input tok':>10} {'output tok':>10} {'p95 s':>7} {'cost USD':>10}"
        lines = [header]
        for model, row in sorted(self.rows.items()):
            cost = f"{row.cost_usd:10.4f}" if not row.unpriced else f"{row.cost_usd:8.4f} *"
            lines.append(
                f"  {model:<28} {row.requests:8.0f} {row.errors:6.0f} {row.input_tokens:10.0f} "
                f"{row.output_tokens:10.0f} {row.p95_s:7.2f} {cost}"
            )
        if any(row.unpriced for row in self.rows.values()):
            lines.append(
                "  * some spans of this model could not be priced (see otel_llm_spans_unpriced_total)"
            )
        return "\n".join(lines)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus-style linear interpolation inside the bucket holding the q-th observation."""
    if not buckets:
        return math.nan
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            width = count - previous_count
            return previous_bound + (bound - previous_bound) * (
                (rank - previous_count) / width if width else 0
            )
        previous_bound, previous_count = bound, count
    return previous_bound


def read_summary(url: str) -> Summary:
    """Scrape ``url`` and fold the GenAI families into rows by request model."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return Summary({}, error=str(exc))
    rows: dict[str, SummaryRow] = defaultdict(SummaryRow)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get(_MODEL_LABEL)
            if not model:
                continue
            row = rows[model]
            name = sample.name
            if name == "otel_llm_requests_total":
                row.requests += sample.value
            elif name == "otel_llm_errors_total":
                row.errors += sample.value
            elif name == "otel_llm_cost_usd_total":
                row.cost_usd += sample.value
            elif name == "otel_llm_spans_unpriced_total":
                row.unpriced += sample.value
            elif name == "gen_ai_client_token_usage_sum":
                token_type = sample.labels.get("gen_ai_token_type")
                if token_type == "input":
                    row.input_tokens += sample.value
                elif token_type == "output":
                    row.output_tokens += sample.value
            elif name == "gen_ai_client_operation_duration_seconds_bucket":
                row.buckets[float(sample.labels["le"])] += sample.value
    return Summary(dict(rows))
