"""End to end: known GenAI spans over OTLP/HTTP into the collector, read back from a real Prometheus.

One Prometheus scrapes the collector's ``prometheus`` exporter every second (and evaluates the
recording rules every second); another receives the ``prometheusremotewrite`` exporter's pushes.
Counts, token sums, histogram quantiles and cost must match values computed here independently
(quantiles with Prometheus' own interpolation, cost with ``genai_prices.calc_price``). Every PromQL
expression of the Grafana dashboard and the recording rules must return data.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from genai_prices import Usage, calc_price

from collector.configuration import parse_config
from collector.service import Service
from otel_llm.conventions import metrics as m
from tests.collector.genai.builders import S, chat_current, request
from tests.integration.prometheus_server import PROMETHEUS, SKIP_REASON, PrometheusServer, free_port

pytestmark = [pytest.mark.external, pytest.mark.skipif(PROMETHEUS is None, reason=SKIP_REASON)]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "config" / "grafana" / "otel-llm-dashboard.json"
RULES = ROOT / "config" / "prometheus" / "recording-rules.yaml"
DURATION_BUCKETS = m.GEN_AI_CLIENT_OPERATION_DURATION_BUCKETS


def _now_ns() -> int:
    return time.time_ns() - 5_000_000_000


def waves() -> tuple[list[tuple[str, list[S]]], list[tuple[str, list[S]]], dict[str, Any]]:
    """Two waves of (service, spans) and the values they must produce."""
    t = _now_ns()
    gpt = dict(model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=200)
    claude = dict(
        model="claude-sonnet-4-5",
        provider="anthropic",
        input_tokens=2000,
        output_tokens=100,
        **{"gen_ai.usage.cache_read.input_tokens": 1500},
    )
    wave1 = [
        (
            "chatbot",
            [
                S(
                    chat_current(**gpt, **{"gen_ai.response.time_to_first_chunk": 0.15}),
                    0.3,
                    start_ns=t,
                    trace=101,
                ),
                S(chat_current(**gpt), 0.6, start_ns=t, trace=102),
                S(chat_current(**gpt), 1.2, start_ns=t, trace=103),
                S(
                    chat_current(
                        "gpt-4o", input_tokens=None, output_tokens=None, **{"error.type": "RateLimitError"}
                    ),
                    0.1,
                    start_ns=t,
                    trace=104,
                    error=True,
                ),
            ],
        ),
        (
            "search",
            [S(chat_current("gpt-4o-mini", input_tokens=500, output_tokens=50), 0.05, start_ns=t, trace=105)],
        ),
    ]
    wave2 = [
        (
            "chatbot",
            [
                S(
                    chat_current(**claude, **{"gen_ai.response.time_to_first_chunk": 0.5}),
                    2.0,
                    start_ns=t,
                    trace=201,
                ),
                S(
                    chat_current(**claude, **{"gen_ai.response.time_to_first_chunk": 0.7}),
                    3.0,
                    start_ns=t,
                    trace=202,
                ),
                S(
                    chat_current("my-local-model", input_tokens=10, output_tokens=10),
                    0.4,
                    start_ns=t,
                    trace=203,
                ),
                S(chat_current("gpt-4o", input_tokens=None, output_tokens=None), 0.5, start_ns=t, trace=204),
                # one call seen twice: the client span (usage) inside a framework span (none)
                S(
                    chat_current("gpt-4o-mini", input_tokens=100, output_tokens=10),
                    0.2,
                    start_ns=t,
                    trace=205,
                    span=2,
                    parent=1,
                ),
                S(
                    chat_current("gpt-4o-mini", input_tokens=None, output_tokens=None),
                    0.25,
                    start_ns=t,
                    trace=205,
                    span=1,
                ),
            ],
        )
    ]
    when = datetime.fromtimestamp(t / 1e9, tz=UTC)

    def price(model: str, provider: str, i: int, o: int, cached: int = 0) -> float:
        usage = Usage(input_tokens=i, output_tokens=o, cache_read_tokens=cached)
        return float(calc_price(usage, model, provider_id=provider, genai_request_timestamp=when).total_price)

    expected = {
        "requests": 10,
        "errors": 1,
        "input_tokens": 3 * 1000 + 500 + 2 * 2000 + 10 + 100,
        "output_tokens": 3 * 200 + 50 + 2 * 100 + 10 + 10,
        "durations": [0.3, 0.6, 1.2, 0.1, 0.05, 2.0, 3.0, 0.4, 0.5, 0.2],
        "cost": 3 * price("gpt-4o", "openai", 1000, 200)
        + price("gpt-4o-mini", "openai", 500, 50)
        + 2 * price("claude-sonnet-4-5", "anthropic", 2000, 100, 1500)
        + price("gpt-4o-mini", "openai", 100, 10),
        "cost_chatbot": 3 * price("gpt-4o", "openai", 1000, 200)
        + 2 * price("claude-sonnet-4-5", "anthropic", 2000, 100, 1500)
        + price("gpt-4o-mini", "openai", 100, 10),
        "unpriced": 2,
        "merged": 1,
        "usage_missing": 1,
    }
    return wave1, wave2, expected


def bucket_quantile(q: float, values: list[float], bounds: tuple[float, ...]) -> float:
    """Prometheus' histogram_quantile over a classic histogram built from ``values``."""
    counts = [0] * (len(bounds) + 1)
    for v in values:
        index = next((i for i, b in enumerate(bounds) if v <= b), len(bounds))
        counts[index] += 1
    cumulative = []
    running = 0
    for c in counts:
        running += c
        cumulative.append(running)
    rank = q * cumulative[-1]
    b = next(i for i, c in enumerate(cumulative) if c >= rank)
    if b == len(bounds):
        return bounds[-1]
    lower = 0.0 if b == 0 else bounds[b - 1]
    prev = 0 if b == 0 else cumulative[b - 1]
    return lower + (bounds[b] - lower) * (rank - prev) / (cumulative[b] - prev)


def post(url: str, spans: list[S], service: str) -> None:
    body = request(spans, service=service).SerializeToString()
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/x-protobuf"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("prom")
    exporter_port, otlp_port = free_port(), free_port()
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    (tmp / "scrape").mkdir()
    (tmp / "scrape" / "rules.yaml").write_text(yaml.safe_dump(rules))
    scraper = PrometheusServer(
        tmp / "scrape",
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yaml]\n"
        "scrape_configs:\n"
        f"  - job_name: collector\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n",
    )
    receiver = PrometheusServer(tmp / "remote", "global: {scrape_interval: 1m}\n", remote_write_receiver=True)
    service: Service | None = None
    try:
        scraper.wait_ready()
        receiver.wait_ready()
        config = parse_config(
            f"""
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{otlp_port}"}}}}}}
processors:
  cost: {{}}
  genai_metrics: {{}}
exporters:
  prometheus: {{endpoint: "127.0.0.1:{exporter_port}"}}
  prometheusremotewrite:
    endpoint: "{receiver.url}/api/v1/write"
    interval: 1s
    retry_on_failure: {{initial_interval: 200ms, max_interval: 1s}}
service:
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [cost, genai_metrics], exporters: [prometheus, prometheusremotewrite]}}
"""
        )
        service = Service(config, instance_id="it-worker-1")
        service.start()
        wave1, wave2, expected = waves()
        url = f"http://127.0.0.1:{otlp_port}/v1/traces"
        for name, spans in wave1:
            post(url, spans, name)
        # Let a scrape see wave 1 alone, so rates over the two waves are non-zero.
        assert scraper.wait_value("sum(otel_llm_requests_total)", 5) == 5, scraper.log()
        for name, spans in wave2:
            post(url, spans, name)
        assert (
            scraper.wait_value("sum(otel_llm_requests_total)", expected["requests"]) == expected["requests"]
        )
        time.sleep(2.5)  # a couple more scrapes and rule evaluations after the last change
        yield {"scraper": scraper, "receiver": receiver, "expected": expected}
    finally:
        if service is not None:
            service.shutdown(5)
        scraper.stop()
        receiver.stop()


def test_counts_tokens_cost_and_quantiles_match(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["scraper"]
    want = stack["expected"]
    assert prom.value("sum(otel_llm_requests_total)") == want["requests"]
    assert prom.value('sum(otel_llm_errors_total{error_type="RateLimitError"})') == want["errors"]
    assert prom.value('sum(gen_ai_client_token_usage_sum{gen_ai_token_type="input"})') == want["input_tokens"]
    assert (
        prom.value('sum(gen_ai_client_token_usage_sum{gen_ai_token_type="output"})') == want["output_tokens"]
    )
    assert prom.value("sum(gen_ai_client_operation_duration_seconds_count)") == len(want["durations"])
    assert prom.value("sum(gen_ai_client_operation_duration_seconds_sum)") == pytest.approx(
        sum(want["durations"])
    )
    for q in (0.5, 0.95, 0.99):
        got = prom.value(
            f"histogram_quantile({q}, sum by (le) (gen_ai_client_operation_duration_seconds_bucket))"
        )
        assert got == pytest.approx(bucket_quantile(q, want["durations"], DURATION_BUCKETS), rel=1e-9), q
    ttfc = prom.value(
        "histogram_quantile(0.5, sum by (le) (gen_ai_client_operation_time_to_first_chunk_seconds_bucket))"
    )
    assert ttfc == pytest.approx(
        bucket_quantile(0.5, [0.15, 0.5, 0.7], m.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK_BUCKETS)
    )
    assert prom.value("sum(otel_llm_cost_usd_total)") == pytest.approx(want["cost"], rel=1e-9)
    assert prom.value('sum(otel_llm_cost_usd_total{service_name="chatbot"})') == pytest.approx(
        want["cost_chatbot"], rel=1e-9
    )
    assert prom.value("sum(otel_llm_spans_unpriced_total)") == want["unpriced"]
    assert (
        prom.value(
            'sum(otel_llm_spans_unpriced_total{otel_llm_unpriced_reason="unknown_model", gen_ai_request_model="my-local-model"})'
        )
        == 1
    )
    assert prom.value("sum(otel_llm_spans_merged_total)") == want["merged"]
    assert prom.value("sum(otel_llm_usage_missing_total)") == want["usage_missing"]
    # every series names its writer
    assert prom.value('count(otel_llm_requests_total{otel_llm_instance_id!="it-worker-1"})') is None


def test_remote_write_delivers_the_same_values(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["receiver"]
    want = stack["expected"]
    assert prom.wait_value("sum(otel_llm_requests_total)", want["requests"]) == want["requests"]
    assert prom.value('sum(gen_ai_client_token_usage_sum{gen_ai_token_type="input"})') == want["input_tokens"]
    assert prom.value("sum(otel_llm_cost_usd_total)") == pytest.approx(want["cost"], rel=1e-9)
    got = prom.value(
        "histogram_quantile(0.95, sum by (le) (gen_ai_client_operation_duration_seconds_bucket))"
    )
    assert got == pytest.approx(bucket_quantile(0.95, want["durations"], DURATION_BUCKETS), rel=1e-9)


def _grafana_to_promql(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "1m")
    return re.sub(r"\$\{?(service|model)\}?", ".*", expr)


# The quality row needs the quality, judge and feedback components; test_quality_prometheus checks it.
QUALITY_METRICS = re.compile(r"otel_llm_(evaluation|judge|feedback|variant)_")


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']} [{target['refId']}]", _grafana_to_promql(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if not QUALITY_METRICS.search(target["expr"])
    ]


def rule_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    return [(rule["record"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def test_dashboard_and_rules_cover_the_asked_panels() -> None:
    titles = " | ".join(title for title, _ in dashboard_exprs()).lower()
    for needed in (
        "cost per model",
        "cost per service",
        "tokens",
        "p50",
        "time to first chunk",
        "error.type",
        "unpriced",
    ):
        assert needed in titles, needed
    assert len(rule_exprs()) >= 10


def test_every_dashboard_and_rule_expression_returns_data(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["scraper"]
    empty = [title for title, expr in [*dashboard_exprs(), *rule_exprs()] if not prom.query(expr)]
    assert not empty, f"no data for: {empty}"
    # the recorded series exist too (rules evaluate every second here)
    missing = [record for record, _ in rule_exprs() if not prom.query(record)]
    assert not missing, f"recording rules produced nothing: {missing}"
