"""``otlp`` (gRPC) and ``otlp_http`` exporters: queue, retry, permanent failures, persistence, counters.

Each test runs a collector (otlp receiver -> exporter) in process against a :class:`FakeBackend` and
drives it with raw gRPC; both exporters run every case (parametrised by transport).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from collector.component import Kind
from collector.exporters._helper import RetrySettings, backoff_delays
from collector.exporters.otlp import retry_delay
from collector.exporters.otlp_http import parse_retry_after
from collector.receivers._otlp_grpc import retry_trailers
from collector.service import Service
from tests.collector.conftest import (
    METRICS_METHOD,
    TRACES_METHOD,
    Certs,
    FakeBackend,
    grpc_channel,
    metrics_request,
    receiver_ports,
    sample,
    trace_request,
    wait_for,
)

PIPELINE = """
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}
exporters:
  {kind}:
    endpoint: "{endpoint}"
    tls: {{insecure: true}}
    timeout: 1s
    retry_on_failure: {{initial_interval: 20ms, max_interval: 100ms, max_elapsed_time: {max_elapsed}}}
    sending_queue: {{num_consumers: 2, queue_size: {queue_size}, storage: {storage}, enabled: {queue}}}
service:
  telemetry: {{metrics: {{enabled: false}}, logs: {{level: error}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [{kind}]}}
    metrics: {{receivers: [otlp], exporters: [{kind}]}}
"""

KINDS = [pytest.param("grpc", id="otlp"), pytest.param("http", id="otlp_http")]


def config(
    backend: FakeBackend,
    *,
    max_elapsed: str = "30s",
    queue_size: int = 100,
    storage: Path | None = None,
    queue: bool = True,
) -> str:
    return PIPELINE.format(
        kind="otlp" if backend.kind == "grpc" else "otlp_http",
        endpoint=backend.endpoint,
        max_elapsed=max_elapsed,
        queue_size=queue_size,
        storage="null" if storage is None else str(storage),
        queue="true" if queue else "false",
    )


def exporter_name(backend: FakeBackend) -> str:
    return "otlp" if backend.kind == "grpc" else "otlp_http"


def send(service: Service, count: int, spans: int = 4, prefix: str = "r") -> None:
    port, _ = receiver_ports(service)
    with grpc_channel(port) as channel:
        export = channel.unary_unary(TRACES_METHOD)
        for index in range(count):
            export(trace_request(spans, marker=f"{prefix}{index}").SerializeToString(), timeout=5)


@pytest.mark.parametrize("kind", KINDS)
def test_backend_down_then_back_loses_nothing(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend], kind: str
) -> None:
    backend = backend_factory(kind)  # not started: connection refused
    service = run_service(config(backend))
    send(service, 5)
    name = exporter_name(backend)
    assert wait_for(
        lambda: sample(service, "otelcol_exporter_queue_size", exporter=name, otel_signal="traces") == 5
    )
    backend.start()
    assert wait_for(lambda: backend.spans() == 20)
    assert sorted(set(backend.markers())) == [f"r{i}" for i in range(5)]
    assert wait_for(lambda: sample(service, "otelcol_exporter_sent_spans_total", exporter=name) == 20)
    port_labels = {"receiver": "otlp", "transport": "grpc"}
    assert sample(service, "otelcol_receiver_accepted_spans_total", **port_labels) == 20
    assert sample(service, "otelcol_exporter_send_failed_spans_total", exporter=name) == 0
    assert wait_for(
        lambda: sample(service, "otelcol_exporter_queue_size", exporter=name, otel_signal="traces") == 0
    )
    assert sample(service, "otelcol_exporter_queue_capacity", exporter=name, otel_signal="traces") == 100


@pytest.mark.parametrize("kind", KINDS)
def test_backend_rejecting_as_invalid_is_counted_and_not_retried(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend], kind: str
) -> None:
    backend = backend_factory(kind, mode="invalid").start()
    service = run_service(config(backend))
    send(service, 3)
    name = exporter_name(backend)
    assert wait_for(lambda: sample(service, "otelcol_exporter_send_failed_spans_total", exporter=name) == 12)
    assert backend.attempts == 3  # one attempt each, no retries
    assert sample(service, "otelcol_exporter_sent_spans_total", exporter=name) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_retries_give_up_after_max_elapsed_time(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend], kind: str
) -> None:
    backend = backend_factory(kind, mode="unavailable").start()
    service = run_service(config(backend, max_elapsed="300ms"))
    send(service, 2)
    name = exporter_name(backend)
    assert wait_for(lambda: sample(service, "otelcol_exporter_send_failed_spans_total", exporter=name) == 8)
    assert backend.attempts >= 4  # retried before giving up


@pytest.mark.parametrize("kind", KINDS)
def test_full_queue_refuses_with_a_retryable_code(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend], kind: str
) -> None:
    backend = backend_factory(kind)  # down
    service = run_service(config(backend, queue_size=2))
    send(service, 2)
    with pytest.raises(grpc.RpcError) as info:
        send(service, 1, prefix="extra")
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "sending queue is full" in info.value.details()
    name = exporter_name(backend)
    assert sample(service, "otelcol_exporter_enqueue_failed_spans_total", exporter=name) == 4
    assert sample(service, "otelcol_receiver_refused_spans_total", receiver="otlp", transport="grpc") == 4


@pytest.mark.parametrize("kind", KINDS)
def test_without_queue_a_failed_send_is_refused_to_the_client(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend], kind: str
) -> None:
    backend = backend_factory(kind)  # down
    service = run_service(config(backend, queue=False, max_elapsed="100ms"))
    with pytest.raises(grpc.RpcError) as info:
        send(service, 1)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    backend.start()

    def delivered() -> bool:
        try:
            send(service, 1)
        except grpc.RpcError:
            return False  # as a real client would, try again
        return True

    assert wait_for(delivered, interval_s=0.1)
    assert backend.spans() == 4


@pytest.mark.parametrize("kind", KINDS)
def test_metrics_pass_through(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend], kind: str
) -> None:
    backend = backend_factory(kind).start()
    service = run_service(config(backend))
    port, _ = receiver_ports(service)
    with grpc_channel(port) as channel:
        channel.unary_unary(METRICS_METHOD)(metrics_request(5).SerializeToString(), timeout=5)
    name = exporter_name(backend)
    assert wait_for(lambda: sample(service, "otelcol_exporter_sent_metric_points_total", exporter=name) == 5)
    assert len(backend.received) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_queue_survives_a_restart(
    run_service: Callable[[str], Service],
    backend_factory: Callable[..., FakeBackend],
    kind: str,
    tmp_path: Path,
) -> None:
    backend = backend_factory(kind)  # down
    first = run_service(config(backend, storage=tmp_path))
    send(first, 3)
    first.shutdown(0.3)  # gives up retrying; the requests stay on disk
    assert list(tmp_path.glob("*.sqlite"))
    backend.start()
    second = run_service(config(backend, storage=tmp_path))
    assert wait_for(lambda: sorted(set(backend.markers())) == ["r0", "r1", "r2"])
    name = exporter_name(backend)
    assert wait_for(lambda: sample(second, "otelcol_exporter_sent_spans_total", exporter=name) == 12)
    assert wait_for(
        lambda: sample(second, "otelcol_exporter_queue_size", exporter=name, otel_signal="traces") == 0
    )


def test_server_retry_delay_is_read_from_both_forms() -> None:
    trailers = retry_trailers(14, "busy", 1.25)
    assert retry_delay(trailers) == 1.25
    assert retry_delay(trailers[:1]) == 1.25
    assert retry_delay(trailers[1:]) == 1.25
    assert retry_delay(()) is None
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_backoff_grows_with_jitter_and_stays_bounded() -> None:
    settings = RetrySettings(initial_interval=1.0, max_interval=4.0, multiplier=2.0, randomization_factor=0.5)
    delays = backoff_delays(settings, random.Random(1))
    values = [delays() for _ in range(6)]
    for value, base in zip(values, [1, 2, 4, 4, 4, 4], strict=True):
        assert base * 0.5 <= value <= base * 1.5


def test_exporter_lifecycle_is_idempotent(backend_factory: Callable[..., FakeBackend]) -> None:
    from collector.configuration import parse_config

    backend = backend_factory("grpc")
    service = Service(parse_config(config(backend)))
    exporter = service.component(Kind.EXPORTER, "otlp")
    exporter.shutdown(0.1)  # before start
    service.start()
    service.shutdown(1.0)
    exporter.shutdown(0.1)  # twice


def test_http_exporter_reconnects_at_once_after_the_server_closed_an_idle_connection(
    run_service: Callable[[str], Service],
) -> None:
    back = run_service(
        """
receivers:
  otlp:
    protocols: {http: {endpoint: "127.0.0.1:0", idle_timeout: 200ms}}
exporters:
  debug: {}
service:
  telemetry: {metrics: {enabled: false}}
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
"""
    )
    _, http_port = receiver_ports(back)
    front = run_service(
        f"""
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{http_port}"
    retry_on_failure: {{initial_interval: 30s}}
service:
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp_http]}}
"""
    )
    debug = back.component(Kind.EXPORTER, "debug")
    send(front, 1)
    assert wait_for(lambda: debug.items["traces"] == 4, timeout_s=5)
    time.sleep(0.5)  # the backend closes the kept-alive connection
    send(front, 1)
    assert wait_for(lambda: debug.items["traces"] == 8, timeout_s=5)  # not after a 30 s retry


@pytest.mark.parametrize("kind", ["otlp", "otlp_http"])
def test_exporter_tls_and_bearer_token_to_a_secured_receiver(
    run_service: Callable[[str], Service], certs: Certs, kind: str
) -> None:
    tls = f"tls: {{cert_file: {certs.server_cert}, key_file: {certs.server_key}}}"
    back = run_service(
        f"""
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:0", auth: {{tokens: [t0ken-for-exporter-tests]}}, {tls}}}
      http: {{endpoint: "127.0.0.1:0", auth: {{tokens: [t0ken-for-exporter-tests]}}, {tls}}}
exporters:
  debug: {{}}
service:
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"""
    )
    grpc_port, http_port = receiver_ports(back)
    endpoint = f"localhost:{grpc_port}" if kind == "otlp" else f"https://localhost:{http_port}"
    front = run_service(
        f"""
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}
exporters:
  {kind}:
    endpoint: "{endpoint}"
    bearer_token: t0ken-for-exporter-tests
    headers: {{x-tenant: acme}}
    tls: {{ca_file: {certs.ca}}}
    retry_on_failure: {{initial_interval: 50ms}}
service:
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [{kind}]}}
"""
    )
    send(front, 2)
    debug = back.component(Kind.EXPORTER, "debug")
    assert wait_for(lambda: debug.items["traces"] == 8, timeout_s=10)
    assert wait_for(lambda: sample(front, "otelcol_exporter_sent_spans_total", exporter=kind) == 8)


def test_a_persistent_queue_file_has_one_owner(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend], tmp_path: Path
) -> None:
    from collector.configuration import parse_config
    from collector.errors import ComponentError

    backend = backend_factory("grpc")
    run_service(config(backend, storage=tmp_path))
    second = Service(parse_config(config(backend, storage=tmp_path)))
    with pytest.raises(ComponentError, match="in use by another process"):
        second.start()


def test_each_worker_gets_its_own_queue_file() -> None:
    from collector.component import Host
    from collector.exporters._helper import _storage_file, _worker_suffix
    from collector.telemetry import SelfTelemetry

    host = Host(telemetry=SelfTelemetry())
    host.shared["collector.service.instance_id"] = "box-123-w1"
    assert _worker_suffix(host) == "-w1"
    assert _storage_file("/q", "otlp/a", "-w1") == Path("/q/otlp_a-w1.sqlite")
    assert _storage_file("/q/queue.sqlite", "otlp", "-w0") == Path("/q/queue-w0.sqlite")
    host.shared["collector.service.instance_id"] = "8b0e5c1e-uuid"
    assert _worker_suffix(host) == ""


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_drains_the_queue_within_the_timeout(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend], kind: str
) -> None:
    backend = backend_factory(kind, delay_s=0.05).start()  # slow: requests wait in the queue
    service = run_service(config(backend))
    send(service, 10)
    started = time.monotonic()
    service.shutdown(5.0)  # what SIGTERM does
    assert time.monotonic() - started < 5.0
    assert sorted(set(backend.markers())) == sorted(f"r{i}" for i in range(10))
    name = exporter_name(backend)
    assert sample(service, "otelcol_exporter_sent_spans_total", exporter=name) == 40
