"""prometheus exporter: names, units, suffixes, HELP, le buckets; the scrape endpoint; received OTLP metrics."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from prometheus_client.parser import text_string_to_metric_families

from collector.component import ComponentId, CreateSettings, Host, Kind
from collector.data import MetricsBatch
from collector.exporters.prometheus import FACTORY, PrometheusExporter
from collector.metrics import MetricStore, metric_family_name, render_text, shared_store, snapshot_to_otlp
from otel_llm.conventions import metrics as m
from tests.collector.processors.conftest import make_host

NOW = 1_800_000_000_000_000_000


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        (m.GEN_AI_CLIENT_OPERATION_DURATION, "s", "histogram", "gen_ai_client_operation_duration_seconds"),
        (m.GEN_AI_CLIENT_TOKEN_USAGE, "{token}", "histogram", "gen_ai_client_token_usage"),
        (m.OTEL_LLM_COST, "USD", "counter", "otel_llm_cost_usd_total"),
        (m.OTEL_LLM_REQUESTS, "{request}", "counter", "otel_llm_requests_total"),
        (m.OTEL_LLM_DRIFT_SCORE, "1", "gauge", "otel_llm_drift_score_ratio"),
        (m.OTEL_LLM_HEALTH_SCORE, "%", "gauge", "otel_llm_health_score_percent"),
        ("http.server.request.size", "By", "histogram", "http_server_request_size_bytes"),
        ("x.rate", "By/s", "gauge", "x_rate_bytes_per_second"),
        ("already_seconds", "s", "histogram", "already_seconds"),
        ("jobs.total", "1", "counter", "jobs_total"),
        ("9lives", "", "gauge", "_9lives"),
    ],
)
def test_family_names(name: str, unit: str, kind: str, expected: str) -> None:
    assert metric_family_name(name, unit, kind) == expected


def _store() -> MetricStore:
    store = MetricStore("w1")
    store.register_resource(("chat",), (("service.name", "chat"),))
    dims = ("gen_ai.request.model", "error.type")
    store.counter(m.OTEL_LLM_COST, dims).add((("chat",), ("gpt-4o", "")), 0.125, NOW)
    histogram = store.histogram(m.GEN_AI_CLIENT_OPERATION_DURATION, dims)
    histogram.record_many([((("chat",), ("gpt-4o", "")), v) for v in (0.015, 0.3, 0.3, 100.0)], NOW)
    store.counter(m.OTEL_LLM_REQUESTS, dims).add((("chat",), ('we"ird\\model\n', "")), 1, NOW)
    return store


def test_exposition_parses_and_carries_help_buckets_and_labels() -> None:
    store = _store()
    text = render_text(store, store.snapshot(NOW))
    families = {family.name: family for family in text_string_to_metric_families(text)}
    # the parser strips _total from counter family names
    cost = families["otel_llm_cost_usd"]
    assert cost.type == "counter" and cost.documentation == m.OTEL_LLM_COST_DESCRIPTION
    (sample,) = cost.samples
    assert sample.name == "otel_llm_cost_usd_total" and sample.value == 0.125
    assert sample.labels == {
        "service_name": "chat",
        "gen_ai_request_model": "gpt-4o",
        "otel_llm_instance_id": "w1",
    }
    duration = families["gen_ai_client_operation_duration_seconds"]
    assert duration.documentation == m.GEN_AI_CLIENT_OPERATION_DURATION_DESCRIPTION
    buckets = {s.labels["le"]: s.value for s in duration.samples if s.name.endswith("_bucket")}
    assert buckets["0.01"] == 0 and buckets["0.02"] == 1 and buckets["0.32"] == 3 and buckets["81.92"] == 3
    assert buckets["+Inf"] == 4
    assert len(buckets) == len(m.GEN_AI_CLIENT_OPERATION_DURATION_BUCKETS) + 1
    sums = {s.name: s.value for s in duration.samples if not s.name.endswith("_bucket")}
    assert sums == {
        "gen_ai_client_operation_duration_seconds_sum": pytest.approx(100.615),
        "gen_ai_client_operation_duration_seconds_count": 4,
    }
    (weird,) = families["otel_llm_requests"].samples
    assert weird.labels["gen_ai_request_model"] == 'we"ird\\model\n'


def test_resource_labels_can_be_left_out_and_namespace_prefixes() -> None:
    store = _store()
    text = render_text(store, store.snapshot(NOW), resource_labels=False, namespace="llm")
    assert "service_name" not in text
    assert "llm_otel_llm_cost_usd_total{" in text


@pytest.fixture
def exporter() -> Iterator[tuple[PrometheusExporter, Host]]:
    host = make_host("w1")
    settings = CreateSettings(
        ComponentId("prometheus"), Kind.EXPORTER, logging.getLogger("t"), host.telemetry
    )
    component = FACTORY.create(FACTORY.config_type.model_validate({"endpoint": "127.0.0.1:0"}), settings)
    component.start(host)
    yield component, host
    component.shutdown(2)
    component.shutdown(2)


def _get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, "", ""


def test_scrape_endpoint_serves_the_store(exporter: tuple[PrometheusExporter, Host]) -> None:
    component, host = exporter
    store = shared_store(host)
    store.counter(m.OTEL_LLM_REQUESTS, ("gen_ai.request.model",)).add(((), ("gpt-4o",)), 3, NOW)
    status, content_type, body = _get(component.port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert 'otel_llm_requests_total{gen_ai_request_model="gpt-4o",otel_llm_instance_id="w1"} 3' in body
    assert _get(component.port, "/other")[0] == 404


def _received() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "app"
    rm.resource.attributes.add(key="process.pid").value.int_value = 4242
    metrics = rm.scope_metrics.add().metrics
    delta = metrics.add(name="app.jobs", unit="{job}", description="Jobs.")
    delta.sum.is_monotonic = True
    delta.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    point = delta.sum.data_points.add(as_int=2)
    point.attributes.add(key="queue").value.string_value = "q1"
    gauge = metrics.add(name="app.temperature", unit="Cel")
    gauge.gauge.data_points.add(as_double=21.5)
    histogram = metrics.add(name="app.latency", unit="ms")
    histogram.histogram.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    histogram.histogram.data_points.add(
        count=3, sum=30.0, explicit_bounds=[5.0, 10.0], bucket_counts=[1, 1, 1]
    )
    return request


def test_received_otlp_metrics_are_exposed(exporter: tuple[PrometheusExporter, Host]) -> None:
    component, _ = exporter
    component.consume(MetricsBatch(_received()))
    component.consume(MetricsBatch(_received()))  # delta adds up, cumulative and gauges replace
    families = {f.name: f for f in text_string_to_metric_families(component.render())}
    (jobs,) = families["app_jobs"].samples
    assert jobs.value == 4 and jobs.labels == {"service_name": "app", "queue": "q1"}  # process.pid left out
    assert families["app_temperature_Cel"].samples[0].value == 21.5
    latency = {s.name + s.labels.get("le", ""): s.value for s in families["app_latency_milliseconds"].samples}
    assert (
        latency["app_latency_milliseconds_bucket+Inf"] == 3 and latency["app_latency_milliseconds_count"] == 3
    )


def test_own_derived_metrics_coming_back_are_not_served_twice(
    exporter: tuple[PrometheusExporter, Host],
) -> None:
    component, host = exporter
    store = shared_store(host)
    store.counter(m.OTEL_LLM_REQUESTS, ("gen_ai.request.model",)).add(((), ("gpt-4o",)), 3, NOW)
    component.consume(MetricsBatch(snapshot_to_otlp(store, store.snapshot())))
    assert component.render().count("# TYPE otel_llm_requests_total counter") == 1


def test_bad_endpoint_is_a_config_problem() -> None:
    config: Any = FACTORY.config_type.model_validate({"endpoint": "nope"})
    assert config.problems() == [("endpoint", "expected host:port, got 'nope'")]


def _free_port_pair() -> int:
    """A port p with p and p + 1 free at the moment (the workers' ports below)."""
    import socket

    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free ports")


def test_each_worker_listens_on_port_plus_its_index() -> None:
    """Workers are separate processes with separate stores: two of them cannot share one scrape port."""
    base = _free_port_pair()
    started = []
    try:
        for index in (0, 1):
            host = make_host(f"w{index}")
            host.shared["collector.runner.worker_index"] = index
            settings = CreateSettings(
                ComponentId("prometheus"), Kind.EXPORTER, logging.getLogger("t"), host.telemetry
            )
            config = FACTORY.config_type.model_validate({"endpoint": f"127.0.0.1:{base}"})
            component = FACTORY.create(config, settings)
            component.start(host)
            started.append(component)
            shared_store(host).counter(m.OTEL_LLM_REQUESTS, ("gen_ai.request.model",)).add(
                ((), ("gpt-4o",)), index + 1, NOW
            )
        assert [c.port for c in started] == [base, base + 1]
        for index, component in enumerate(started):
            body = _get(component.port, "/metrics")[2]
            assert f'otel_llm_instance_id="w{index}"}} {index + 1}' in body
        # Port 0 stays "any free port" for every worker.
        host = make_host("w3")
        host.shared["collector.runner.worker_index"] = 3
        settings = CreateSettings(
            ComponentId("prometheus"), Kind.EXPORTER, logging.getLogger("t"), host.telemetry
        )
        component = FACTORY.create(FACTORY.config_type.model_validate({"endpoint": "127.0.0.1:0"}), settings)
        component.start(host)
        started.append(component)
        assert component.port not in (0, 3)
    finally:
        for component in started:
            component.shutdown(2)
