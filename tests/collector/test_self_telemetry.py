"""The collector's own metrics: pushed over OTLP/HTTP when configured, with the Collector's names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector.configuration import parse_config
from collector.errors import ConfigError
from collector.service import Service


class _Capture(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def backend() -> Iterator[tuple[str, list[bytes]]]:
    handler = type("Capture", (_Capture,), {"bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/metrics", handler.bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _config(url: str) -> str:
    return f"""
receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:0"}}}}}}}}
exporters: {{debug: {{}}}}
service:
  telemetry:
    metrics: {{enabled: false, otlp: {{endpoint: "{url}", interval: 100ms}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"""


def test_self_telemetry_is_pushed_over_otlp(backend: tuple[str, list[bytes]]) -> None:
    url, bodies = backend
    service = Service(parse_config(_config(url), environ={}), instance_id="self-test")
    service.start()
    try:
        deadline = threading.Event()
        for _ in range(50):
            if bodies:
                break
            deadline.wait(0.1)
    finally:
        service.shutdown(5)
    assert bodies, "nothing was pushed"
    request = ExportMetricsServiceRequest.FromString(bodies[-1])
    (resource_metrics,) = request.resource_metrics
    resource = {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}
    assert resource == {"service.name": "otel-llm-collector", "service.instance.id": "self-test"}
    metrics = {m.name: m for m in resource_metrics.scope_metrics[0].metrics}
    accepted = metrics["otelcol_receiver_accepted_spans"]
    assert accepted.sum.is_monotonic
    labels = {kv.key: kv.value.string_value for kv in accepted.sum.data_points[0].attributes}
    assert labels == {"receiver": "otlp", "transport": "http"}
    assert metrics["otelcol_process_memory_rss"].gauge.data_points[0].as_double > 0


def test_self_telemetry_endpoint_must_be_a_url() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config("127.0.0.1:4318"), "x.yaml", environ={})
    assert caught.value.problems == [
        "x.yaml: service::telemetry::metrics::otlp::endpoint: expected an http:// or https:// URL, got '127.0.0.1:4318'"
    ]
