"""End to end: quality, judge, feedback and variant metrics from a running collector into a real Prometheus.

GenAI spans with captured content go over OTLP/HTTP into a collector whose traces pipeline runs the
``quality`` and ``judge`` processors (the judge is a scripted OpenAI-compatible server on loopback);
feedback is posted to the ``feedback`` extension; Prometheus scrapes the ``prometheus`` exporter every
second. Every metric family of the quality feature must arrive with the values computed here.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from collector.component import Kind
from collector.configuration import parse_config
from collector.service import Service
from tests.collector.conftest import post_traces
from tests.collector.quality._judge_server import JudgeServer, verdict
from tests.collector.quality._spans import batch, chat_span
from tests.integration.prometheus_server import PROMETHEUS, SKIP_REASON, PrometheusServer, free_port
from tests.integration.test_prometheus import DASHBOARD

pytestmark = [pytest.mark.external, pytest.mark.skipif(PROMETHEUS is None, reason=SKIP_REASON)]

N = 40  # responses; odd trace numbers use prompt v1, even ones v2
QUALITY_METRICS = re.compile(r"otel_llm_(evaluation|judge|feedback|variant)_")


def _target(ref: str, expr: str, legend: str, **extra: object) -> dict[str, object]:
    return {
        "refId": ref,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        **extra,
    }


def _panel(
    panel_id: int,
    kind: str,
    title: str,
    description: str,
    x: int,
    y: int,
    w: int,
    unit: str,
    targets: list[dict[str, object]],
    **extra: object,
) -> dict[str, object]:
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": targets,
        **extra,
    }


_SEL = 'service_name=~"$service", gen_ai_request_model=~"$model"'
_BY = "gen_ai_evaluation_name, gen_ai_request_model"
#: The dashboard's quality row as proposed for config/grafana (ids and y from 100; renumber when merging).
QUALITY_ROW: list[dict[str, object]] = [
    {
        "id": 100,
        "type": "row",
        "title": "Quality",
        "collapsed": False,
        "gridPos": {"x": 0, "y": 100, "w": 24, "h": 1},
        "panels": [],
    },
    _panel(
        101,
        "timeseries",
        "Mean evaluation score by evaluator and model",
        "Heuristic and judge scores, 0..1 (1 is good). Read with the share of spans without content.",
        0,
        101,
        12,
        "percentunit",
        [
            _target(
                "A",
                f"sum by ({_BY}) (rate(otel_llm_evaluation_score_sum{{{_SEL}}}[$__rate_interval])) / "
                f"sum by ({_BY}) (rate(otel_llm_evaluation_score_count{{{_SEL}}}[$__rate_interval]))",
                "{{gen_ai_evaluation_name}} {{gen_ai_request_model}}",
            )
        ],
    ),
    _panel(
        102,
        "timeseries",
        "Low scores (<= 0.4) by evaluator and prompt version",
        "Share of evaluated answers that scored 0.4 or less: empty, truncated, refused, invalid JSON, "
        "ungrounded, irrelevant, hallucinated, toxic.",
        12,
        101,
        12,
        "percentunit",
        [
            _target(
                "A",
                "sum by (gen_ai_evaluation_name, gen_ai_prompt_version) (rate(otel_llm_evaluation_score_bucket"
                f'{{{_SEL}, le="0.4"}}[$__rate_interval])) / sum by (gen_ai_evaluation_name, '
                "gen_ai_prompt_version) (rate(otel_llm_evaluation_score_count"
                f"{{{_SEL}}}[$__rate_interval]))",
                "{{gen_ai_evaluation_name}} {{gen_ai_prompt_version}}",
            )
        ],
    ),
    _panel(
        103,
        "timeseries",
        "Feedback: positive share and coverage by model",
        "Positive / (positive + negative) feedback, and the share of responses that got any feedback "
        "(a rate over rated responses only is biased).",
        0,
        109,
        8,
        "percentunit",
        [
            _target(
                "A",
                f"avg by (gen_ai_request_model) (otel_llm_feedback_positive_ratio{{{_SEL}}})",
                "positive {{gen_ai_request_model}}",
            ),
            _target(
                "B",
                f"avg by (gen_ai_request_model) (otel_llm_feedback_coverage_ratio{{{_SEL}}})",
                "coverage {{gen_ai_request_model}}",
            ),
        ],
    ),
    _panel(
        104,
        "timeseries",
        "Feedback per second by kind and polarity",
        "",
        8,
        109,
        8,
        "short",
        [
            _target(
                "A",
                "sum by (otel_llm_feedback_kind, otel_llm_feedback_polarity) "
                f"(rate(otel_llm_feedback_total{{{_SEL}}}[$__rate_interval]))",
                "{{otel_llm_feedback_kind}} {{otel_llm_feedback_polarity}}",
            ),
            _target("B", "sum(rate(otel_llm_feedback_unjoined_total[$__rate_interval]))", "unjoined"),
        ],
    ),
    _panel(
        105,
        "timeseries",
        "Spans without captured content (share)",
        "Content capture is opt-in; quality scores cover only the other spans.",
        16,
        109,
        8,
        "percentunit",
        [
            _target(
                "A",
                f"sum(rate(otel_llm_evaluation_spans_without_content_total{{{_SEL}}}[$__rate_interval])) / "
                f"sum(rate(otel_llm_requests_total{{{_SEL}}}[$__rate_interval]))",
                "without content",
            )
        ],
    ),
    _panel(
        106,
        "timeseries",
        "Judge spend (USD per hour) and calls by error",
        "",
        0,
        117,
        12,
        "currencyUSD",
        [
            _target(
                "A",
                "sum by (gen_ai_evaluation_name) (rate(otel_llm_judge_cost_usd_total[$__rate_interval])) * 3600",
                "USD/h {{gen_ai_evaluation_name}}",
            ),
            _target(
                "B",
                "sum by (error_type) (rate(otel_llm_judge_calls_total[$__rate_interval])) * 3600",
                "calls/h {{error_type}}",
            ),
        ],
    ),
    _panel(
        107,
        "timeseries",
        "Judge: skipped spans per second by reason",
        "sampled_out is the complement of the sample rate; budget_exhausted, rate_limited and queue_full "
        "mean a limit was hit and sampling backed off.",
        12,
        117,
        12,
        "short",
        [
            _target(
                "A",
                "sum by (otel_llm_judge_skip_reason) (rate(otel_llm_judge_skipped_total[$__rate_interval]))",
                "{{otel_llm_judge_skip_reason}}",
            )
        ],
    ),
    _panel(
        108,
        "table",
        "Variant comparison (B - A, 95 % interval, p-value)",
        "From the quality processor's variants; p below 0.05 marks a difference unlikely to be chance.",
        0,
        125,
        24,
        "short",
        [
            _target("A", "otel_llm_variant_difference_ratio", "", instant=True, format="table"),
            _target("B", "otel_llm_variant_ci_lower_ratio", "", instant=True, format="table"),
            _target("C", "otel_llm_variant_ci_upper_ratio", "", instant=True, format="table"),
            _target("D", "otel_llm_variant_p_value_ratio", "", instant=True, format="table"),
        ],
        transformations=[{"id": "merge", "options": {}}],
    ),
]


def _post_feedback(port: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            "POST",
            "/v1/feedback",
            body=json.dumps(items),
            headers={"Authorization": "Bearer it-feedback-token-0123"},
        )
        response = conn.getresponse()
        assert response.status == 202
        reply: dict[str, Any] = json.loads(response.read())
        return reply
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("quality-prom")
    exporter_port, otlp_port = free_port(), free_port()
    judge = JudgeServer([verdict("relevant", 1.0)])
    prometheus = PrometheusServer(
        tmp,
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: collector\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n",
    )
    service: Service | None = None
    try:
        prometheus.wait_ready()
        config = parse_config(
            f"""
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{otlp_port}"}}}}}}
processors:
  genai_metrics: {{}}
  quality:
    variants: [{{name: prompt, a: v1, b: v2, score_evaluator: answer_length}}]
    variant_interval: 200ms
    max_answer_chars: 40
  judge:
    endpoint: "{judge.url}"
    model: judge-model
    price: {{input_usd_per_mtok: 1.0, output_usd_per_mtok: 2.0}}
    sample_rate: 1.0
    settle_delay: 0s
    evaluators: [{{name: relevance}}]
    requests_per_minute: 0
extensions:
  feedback:
    endpoint: "127.0.0.1:0"
    auth: {{tokens: [it-feedback-token-0123]}}
    refresh_interval: 200ms
    join_window: 1s
exporters:
  prometheus: {{endpoint: "127.0.0.1:{exporter_port}"}}
service:
  extensions: [feedback]
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [genai_metrics, quality, judge], exporters: [prometheus]}}
"""
        )
        service = Service(config, instance_id="it-quality")
        service.start()
        feedback_port = service.component(Kind.EXTENSION, "feedback").address[1]
        spans = []
        for n in range(1, N + 1):
            version = "v1" if n % 2 else "v2"
            answer = "Paris." if version == "v1" else "Paris is the capital of France, of course." * 2
            spans.append(chat_span(n, prompt_version=version, answer=answer, response_id=f"chatcmpl-{n}"))
        spans.append(chat_span(N + 1, question=None, answer=None))  # no content captured
        post_traces(otlp_port, batch(*spans, service="it-app").request.SerializeToString())
        reply = _post_feedback(
            feedback_port,
            [
                {"response_id": f"chatcmpl-{n}", "kind": "thumbs", "value": "up" if n % 2 else "down"}
                for n in range(1, 21)
            ]
            + [{"trace_id": f"{10**6:032x}", "kind": "regenerate"}],
        )
        assert reply == {"accepted": 21, "joined": 20, "pending": 1}
        yield {"prometheus": prometheus, "judge": judge}
    finally:
        if service is not None:
            service.shutdown(5)
        prometheus.stop()
        judge.stop()


def test_heuristic_scores_and_spans_without_content(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["prometheus"]
    count = 'sum(otel_llm_evaluation_score_count{gen_ai_evaluation_name="answer_length"})'
    assert prom.wait_value(count, N) == N, prom.log()
    too_long = (
        'sum(otel_llm_evaluation_score_count{gen_ai_evaluation_name="answer_length",'
        'gen_ai_evaluation_score_label="too_long",gen_ai_prompt_version="v2",service_name="it-app"})'
    )
    assert prom.wait_value(too_long, N / 2) == N / 2
    assert prom.wait_value("sum(otel_llm_evaluation_spans_without_content_total)", 1) == 1


def test_judge_scores_calls_and_cost(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["prometheus"]
    assert prom.wait_value('sum(otel_llm_evaluation_score_count{gen_ai_evaluation_name="relevance"})', N) == N
    assert prom.wait_value("sum(otel_llm_judge_calls_total)", N) == N
    assert prom.wait_value("sum(otel_llm_judge_cost_usd_total)", N * 0.0012, rel=1e-6) == pytest.approx(
        N * 0.0012
    )


def test_feedback_counts_coverage_and_rates(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["prometheus"]
    assert prom.wait_value('sum(otel_llm_feedback_total{otel_llm_feedback_polarity="positive"})', 10) == 10
    assert prom.wait_value('sum(otel_llm_feedback_total{gen_ai_prompt_version="v2"})', 10) == 10
    assert prom.wait_value('otel_llm_feedback_coverage_ratio{gen_ai_prompt_version="v1"}', 0.5) == 0.5
    assert prom.wait_value('sum(otel_llm_feedback_coverage_ratio{gen_ai_prompt_version=""})', 0.0) == 0.0
    assert prom.wait_value('otel_llm_feedback_positive_ratio{gen_ai_prompt_version="v1"}', 1.0) == 1.0
    unjoined = 'sum(otel_llm_feedback_unjoined_total{otel_llm_feedback_unjoined_reason="expired"})'
    assert prom.wait_value(unjoined, 1) == 1  # the regenerate signal for an unknown trace


def test_variant_comparison(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["prometheus"]
    score = '{otel_llm_variant_name="prompt",otel_llm_variant_metric="quality_score"}'
    assert prom.wait_value(f"otel_llm_variant_difference_ratio{score}", -1.0) == -1.0
    rate = '{otel_llm_variant_name="prompt",otel_llm_variant_metric="positive_feedback_rate"}'
    assert prom.wait_value(f"otel_llm_variant_difference_ratio{rate}", -1.0) == -1.0
    p_value = prom.wait_value(f"otel_llm_variant_p_value_ratio{rate}", 0.0, rel=1e-3)
    assert p_value is not None and p_value < 1e-4


def _grafana_to_promql(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "1m")
    return re.sub(r"\$\{?(service|model)\}?", ".*", expr)


def _wait_for_data(prom: PrometheusServer, expr: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        result = prom.query(expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def test_proposed_quality_row_returns_data(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["prometheus"]
    for panel in QUALITY_ROW:
        for target in panel.get("targets", []):  # type: ignore[attr-defined]
            expr = _grafana_to_promql(str(target["expr"]))
            assert _wait_for_data(prom, expr), f"{panel['title']} [{target['refId']}]: no data for {expr}"


def test_dashboard_quality_panels_return_data(stack: dict[str, Any]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        (f"{panel['title']} [{target['refId']}]", _grafana_to_promql(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if QUALITY_METRICS.search(target.get("expr", ""))
    ]
    if not exprs:
        pytest.skip("the dashboard has no quality panels yet (see QUALITY_ROW for the proposed row)")
    prom: PrometheusServer = stack["prometheus"]
    for title, expr in exprs:
        assert _wait_for_data(prom, expr), f"{title}: no data for {expr}"
