"""Derived metrics reach OTLP exporters: otlp receiver → cost + genai_metrics; derived_metrics → otlp_http."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector.configuration import parse_config
from collector.service import Service
from otel_llm.conventions import metrics as m
from tests.collector.conftest import post_traces
from tests.collector.genai.builders import S, chat_current, request
from tests.integration.prometheus_server import free_port


class _Backend:
    """An OTLP/HTTP metrics endpoint that keeps what it receives."""

    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                backend.requests.append(ExportMetricsServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def values(self, name: str) -> list[tuple[dict[str, str], float, int]]:
        out = []
        for req in self.requests:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == name:
                            for point in metric.sum.data_points:
                                labels = {kv.key: kv.value.string_value for kv in point.attributes}
                                out.append((labels, point.as_double, metric.sum.aggregation_temporality))
        return out


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_derived_metrics_are_exported_over_otlp(temporality: str) -> None:
    backend = _Backend()
    otlp_port = free_port()
    config = parse_config(
        f"""
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{otlp_port}"}}}}}}
  derived_metrics: {{interval: 200ms, temporality: {temporality}}}
processors:
  cost: {{}}
  genai_metrics: {{}}
exporters:
  debug: {{}}
  otlp_http: {{endpoint: "{backend.url}", sending_queue: {{enabled: false}}}}
service:
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [cost, genai_metrics], exporters: [debug]}}
    metrics/derived: {{receivers: [derived_metrics], exporters: [otlp_http]}}
"""
    )
    service = Service(config, instance_id="w-otlp")
    service.start()
    try:
        body = request([S(chat_current()), S(chat_current())], service="otlp-app").SerializeToString()
        for _ in range(2):
            post_traces(otlp_port, body)
            time.sleep(0.5)  # at least one export between the two requests
    finally:
        service.shutdown(5)
    points = backend.values(m.OTEL_LLM_REQUESTS)
    assert points, "no derived metrics reached the OTLP backend"
    labels, _, kind = points[-1]
    assert labels["otel_llm.instance.id"] == "w-otlp" and labels["gen_ai.request.model"] == "gpt-4o"
    if temporality == "cumulative":
        assert points[-1][1] == 4 and kind == 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
    else:
        assert sum(value for _, value, _ in points) == 4 and kind == 1  # DELTA: the parts add up
    backend.server.shutdown()
    backend.server.server_close()
