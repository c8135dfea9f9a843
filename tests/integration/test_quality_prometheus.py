"""End to end: quality, judge, feedback and variant metrics from a running collector into a real Prometheus.

GenAI spans with captured content go over OTLP/HTTP into a collector whose traces pipeline runs the
``quality`` and ``judge`` processors (the judge is a scripted OpenAI-compatible server on loopback);
feedback is posted to the ``feedback`` extension; Prometheus scrapes the ``prometheus`` exporter every
second. Every metric family of the quality feature must arrive with the values computed here.
"""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from collector.component import Kind
from collector.configuration import parse_config
from collector.service import Service
from tests.collector.quality._judge_server import JudgeServer, verdict
from tests.collector.quality._spans import batch, chat_span
from tests.integration.prometheus_server import PROMETHEUS, SKIP_REASON, PrometheusServer, free_port

pytestmark = [pytest.mark.external, pytest.mark.skipif(PROMETHEUS is None, reason=SKIP_REASON)]

N = 40  # responses; odd trace numbers use prompt v1, even ones v2


def _post_traces(port: int, body: bytes) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as response:
        assert response.status == 200


def _post_feedback(port: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            "POST", "/v1/feedback", body=json.dumps(items), headers={"Authorization": "Bearer it-token"}
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
    auth: {{tokens: [it-token]}}
    refresh_interval: 200ms
exporters:
  prometheus: {{endpoint: "127.0.0.1:{exporter_port}"}}
service:
  extensions: [feedback]
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [quality, judge], exporters: [prometheus]}}
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
        _post_traces(otlp_port, batch(*spans, service="it-app").request.SerializeToString())
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


def test_variant_comparison(stack: dict[str, Any]) -> None:
    prom: PrometheusServer = stack["prometheus"]
    score = '{otel_llm_variant_name="prompt",otel_llm_variant_metric="quality_score"}'
    assert prom.wait_value(f"otel_llm_variant_difference_ratio{score}", -1.0) == -1.0
    rate = '{otel_llm_variant_name="prompt",otel_llm_variant_metric="positive_feedback_rate"}'
    assert prom.wait_value(f"otel_llm_variant_difference_ratio{rate}", -1.0) == -1.0
    p_value = prom.wait_value(f"otel_llm_variant_p_value_ratio{rate}", 0.0, rel=1e-3)
    assert p_value is not None and p_value < 1e-4
