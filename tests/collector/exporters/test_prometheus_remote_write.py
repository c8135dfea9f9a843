"""prometheusremotewrite: the hand-written encoding, snappy, headers, retries and permanent failures."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cramjam
import pytest

from collector.component import ComponentId, CreateSettings, Kind
from collector.exporters.prometheusremotewrite import FACTORY, decode_write_request, encode_write_request
from collector.metrics import shared_store
from otel_llm.conventions import metrics as m
from tests.collector.processors.conftest import make_host

NOW = 1_800_000_000_000_000_000


def test_encoding_round_trips_with_sorted_labels_and_negative_timestamps() -> None:
    data = encode_write_request(
        [
            ([("zeta", "1"), ("__name__", "up"), ("alpha", "é")], 1.5, 1_700_000_000_123),
            ([("__name__", "neg")], -2.0, -5),
        ]
    )
    decoded = decode_write_request(data)
    assert decoded == [
        ({"__name__": "up", "alpha": "é", "zeta": "1"}, [(1.5, 1_700_000_000_123)]),
        ({"__name__": "neg"}, [(-2.0, (1 << 64) - 5)]),  # int64 as two's-complement varint
    ]
    assert list(decoded[0][0]) == ["__name__", "alpha", "zeta"]


class _Backend:
    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                backend.bodies.append((dict(self.headers), body))
                code = backend.answers.pop(0) if backend.answers else 204
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[_Backend]:
    server = _Backend(list(getattr(request, "param", [])))
    yield server
    server.close()


def _exporter(url: str) -> Any:
    host = make_host("w1")
    store = shared_store(host)
    store.register_resource(("chat",), (("service.name", "chat"),))
    store.counter(m.OTEL_LLM_REQUESTS, ("gen_ai.request.model",)).add((("chat",), ("gpt-4o",)), 7, NOW)
    store.histogram(m.GEN_AI_CLIENT_OPERATION_DURATION, ("gen_ai.request.model",)).record(
        (("chat",), ("gpt-4o",)), 0.3, NOW
    )
    config = FACTORY.config_type.model_validate(
        {
            "endpoint": url,
            "interval": "1h",
            "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms"},
        }
    )
    settings = CreateSettings(
        ComponentId("prometheusremotewrite"), Kind.EXPORTER, logging.getLogger("t"), host.telemetry
    )
    exporter = FACTORY.create(config, settings)
    exporter.start(host)
    return exporter


@pytest.mark.parametrize("backend", [[503, 429, 500]], indirect=True)
def test_sends_snappy_protobuf_and_retries_retryable_answers(backend: _Backend) -> None:
    exporter = _exporter(backend.url)
    try:
        assert exporter.flush() is True
    finally:
        exporter.shutdown(2)
    assert len(backend.bodies) >= 4  # three refusals, then accepted (shutdown may send once more)
    headers, body = backend.bodies[3]
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    series = {
        labels["__name__"] + labels.get("le", ""): (labels, samples)
        for labels, samples in decode_write_request(bytes(cramjam.snappy.decompress_raw(body)))
    }
    labels, samples = series["otel_llm_requests_total"]
    assert labels == {
        "__name__": "otel_llm_requests_total",
        "service_name": "chat",
        "gen_ai_request_model": "gpt-4o",
        "otel_llm_instance_id": "w1",
    }
    assert samples[0][0] == 7
    assert series["gen_ai_client_operation_duration_seconds_bucket0.32"][1][0][0] == 1
    assert series["gen_ai_client_operation_duration_seconds_count"][1][0][0] == 1


@pytest.mark.parametrize("backend", [[400]], indirect=True)
def test_permanent_errors_are_not_retried(backend: _Backend) -> None:
    exporter = _exporter(backend.url)
    try:
        assert exporter.flush() is False
        assert len(backend.bodies) == 1 and exporter.failed_requests == 1
    finally:
        exporter.shutdown(2)


def test_unreachable_backend_gives_up_within_the_deadline() -> None:
    exporter = _exporter("http://127.0.0.1:9/api/v1/write")
    import time

    started = time.monotonic()
    try:
        assert exporter.flush(deadline=time.monotonic() + 0.3) is False
    finally:
        exporter.shutdown(0.3)
    assert time.monotonic() - started < 3
