"""Shared fixtures for collector tests: services on free loopback ports, fake OTLP backends, requests, certs."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.component import Kind
from collector.configuration import parse_config
from collector.service import Service

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def trace_request(
    spans: int = 10, attributes: int = 3, service: str = "svc", marker: str = ""
) -> ExportTraceServiceRequest:
    """A request with ``spans`` spans, each with ``attributes`` attributes (and a ``marker`` attribute if given)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name = "tests"
    for index in range(spans):
        span = ss.spans.add()
        span.trace_id = index.to_bytes(16, "big")
        span.span_id = (index + 1).to_bytes(8, "big")
        span.name = f"span-{index}"
        span.start_time_unix_nano = 1_700_000_000_000_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000
        for a in range(attributes):
            attr = span.attributes.add()
            attr.key, attr.value.int_value = f"attr.{a}", a
        if marker:
            attr = span.attributes.add()
            attr.key, attr.value.string_value = "test.marker", marker
    return request


def metrics_request(points: int = 3) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "test.gauge"
    for index in range(points):
        metric.gauge.data_points.add().as_int = index
    return request


def logs_request(records: int = 2) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for index in range(records):
        scope_logs.log_records.add().body.string_value = f"line {index}"
    return request


def sample(service: Service, name: str, **labels: str) -> float:
    """A self-telemetry sample (0 when absent)."""
    value = service.telemetry.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def post_traces(port: int, body: bytes, timeout_s: float = 5.0) -> None:
    """POST a protobuf ``ExportTraceServiceRequest`` to ``/v1/traces`` on loopback; asserts a 200."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as response:
        assert response.status == 200


def collector_subprocess(config: Path, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    """``python -m collector.cli collector --config config`` from the repository root, stderr to ``stderr``."""
    return subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "collector", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        cwd=Path(__file__).resolve().parents[2],
    )


BASE = """
service:
  telemetry: {metrics: {enabled: false}, logs: {level: warning}}
"""


@pytest.fixture
def run_service() -> Iterator[Callable[[str], Service]]:
    """Start a Service from YAML (a ``service:`` section without telemetry gets metrics off); stopped after."""
    started: list[Service] = []

    def start(text: str) -> Service:
        config = parse_config(text, "<test>")
        service = Service(config)
        service.start()
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        service.shutdown(1.0)  # tests with a backend that is down would otherwise wait the whole timeout


def receiver_ports(service: Service, name: str = "otlp") -> tuple[int, int]:
    receiver = service.component(Kind.RECEIVER, name)
    return receiver.grpc_port, receiver.http_port


RECEIVER_ONLY = """
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}, http: {{endpoint: "127.0.0.1:0"}}}}
    {extra}
exporters:
  debug: {{}}
service:
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
    metrics: {{receivers: [otlp], exporters: [debug]}}
    logs: {{receivers: [otlp], exporters: [debug]}}
"""


@dataclass
class FakeBackend:
    """A programmable OTLP/gRPC or OTLP/HTTP backend on a fixed loopback port.

    ``mode``: ``ok``, ``unavailable`` (with ``retry_after_s`` as RetryInfo / Retry-After if set),
    ``invalid`` (INVALID_ARGUMENT / 400). ``stop()`` and ``start()`` take it down and bring it back
    on the same port. ``received`` holds the raw request bodies (HTTP: decompressed) it accepted.
    """

    kind: str = "grpc"
    port: int = field(default_factory=free_port)
    mode: str = "ok"
    retry_after_s: float | None = None
    delay_s: float = 0.0
    received: list[bytes] = field(default_factory=list)
    attempts: int = 0
    _grpc: Any = None
    _http: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}" if self.kind == "grpc" else f"http://127.0.0.1:{self.port}"

    def spans(self) -> int:
        total = 0
        for body in list(self.received):
            request = ExportTraceServiceRequest.FromString(body)
            total += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        return total

    def markers(self) -> list[str]:
        out = []
        for body in list(self.received):
            request = ExportTraceServiceRequest.FromString(body)
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.extend(kv.value.string_value for kv in span.attributes if kv.key == "test.marker")
        return out

    def _answer(self, body: bytes) -> str:
        with self._lock:
            self.attempts += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.mode == "ok":
            with self._lock:
                self.received.append(body)
        return self.mode

    def start(self) -> FakeBackend:
        if self.kind == "grpc":
            self._start_grpc()
        else:
            self._start_http()
        return self

    def _start_grpc(self) -> None:
        from collector.receivers._otlp_grpc import retry_trailers

        backend = self

        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            mode = backend._answer(request)
            if mode == "unavailable":
                if backend.retry_after_s is not None:
                    context.set_trailing_metadata(retry_trailers(14, "busy", backend.retry_after_s))
                context.abort(grpc.StatusCode.UNAVAILABLE, "backend busy")
            if mode == "invalid":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "backend says the data is bad")
            return b""

        server = grpc.server(ThreadPoolExecutor(4), options=[("grpc.so_reuseport", 0)])
        handlers = {"Export": grpc.unary_unary_rpc_method_handler(export)}
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(name, handlers)
                for name in (
                    "opentelemetry.proto.collector.trace.v1.TraceService",
                    "opentelemetry.proto.collector.metrics.v1.MetricsService",
                    "opentelemetry.proto.collector.logs.v1.LogsService",
                )
            ]
        )
        assert server.add_insecure_port(f"127.0.0.1:{self.port}") == self.port
        server.start()
        self._grpc = server

    def _start_http(self) -> None:
        import gzip

        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                mode = backend._answer(body)
                status = {"ok": 200, "unavailable": 503, "invalid": 400}[mode]
                data = b"" if mode == "ok" else b"backend says no"
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf" if mode == "ok" else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                if mode == "unavailable" and backend.retry_after_s is not None:
                    self.send_header("Retry-After", str(int(backend.retry_after_s)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._http = (server, thread)

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(0).wait(5)
            self._grpc = None
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._http = None


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., FakeBackend]]:
    made: list[FakeBackend] = []

    def make(kind: str = "grpc", **kwargs: Any) -> FakeBackend:
        backend = FakeBackend(kind=kind, **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.stop()


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    expired_client_cert: Path
    expired_client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server cert for 127.0.0.1/localhost, a client cert, and expired server and client certs."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def issue(name: str, days_args: list[str]) -> None:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-extfile", "san.ext", *days_args, cwd=d)  # fmt: skip

    issue("server", ["-days", "2"])
    issue("client", ["-days", "2"])
    # Expired certificates: `-days -1` puts notAfter a day before notBefore (now), so any check fails
    # with "certificate has expired" (openssl 3.0's x509 has no -not_after).
    issue("expired", ["-days", "-1"])
    issue("expired_client", ["-days", "-1"])
    return Certs(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        expired_cert=d / "expired.pem",
        expired_key=d / "expired.key",
        expired_client_cert=d / "expired_client.pem",
        expired_client_key=d / "expired_client.key",
    )


@contextlib.contextmanager
def grpc_channel(port: int, credentials: grpc.ChannelCredentials | None = None) -> Iterator[grpc.Channel]:
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", "localhost")])
        if credentials is not None
        else grpc.insecure_channel(target)
    )
    try:
        yield channel
    finally:
        channel.close()
