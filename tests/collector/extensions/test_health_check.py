"""``health_check``: HTTP /health and grpc.health.v1 Check follow the service status."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
import pytest

from collector.component import Kind
from collector.extensions.health_check import _service_name
from collector.service import Service, ServiceStatus
from tests.collector.conftest import grpc_channel, receiver_ports

CONFIG = """
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
exporters:
  debug: {}
extensions:
  health_check: {endpoint: "127.0.0.1:0"}
service:
  extensions: [health_check]
  telemetry: {metrics: {enabled: false}}
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
"""


def get(port: int, path: str = "/health") -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def grpc_check(port: int, service_name: bytes = b"") -> bytes:
    with grpc_channel(port) as channel:
        request = b"\x0a" + bytes([len(service_name)]) + service_name if service_name else b""
        result: bytes = channel.unary_unary("/grpc.health.v1.Health/Check")(request, timeout=5)
        return result


def test_health_follows_status_and_refusing(run_service: Callable[[str], Service]) -> None:
    service = run_service(CONFIG)
    port = service.component(Kind.EXTENSION, "health_check").port
    grpc_port, _ = receiver_ports(service)
    status, body = get(port)
    assert (status, body["status"], body["refusing"]) == (200, "ready", False)
    assert grpc_check(grpc_port) == b"\x08\x01"  # SERVING
    assert grpc_check(grpc_port, b"opentelemetry.proto.collector.trace.v1.TraceService") == b"\x08\x01"

    holder = service.status_holder
    holder.refusing = True
    holder.reasons["memory_limiter/x"] = "memory above soft limit"
    status, body = get(port)
    assert (status, body["refusing"], body["reasons"]) == (
        503,
        True,
        {"memory_limiter/x": "memory above soft limit"},
    )
    assert grpc_check(grpc_port) == b"\x08\x02"  # NOT_SERVING
    holder.refusing = False
    holder.reasons.clear()

    holder.status = ServiceStatus.STOPPING
    assert get(port)[0] == 503
    holder.status = ServiceStatus.READY
    assert get(port, "/other")[0] == 404

    with pytest.raises(grpc.RpcError) as info:
        grpc_check(grpc_port, b"no.such.Service")
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_health_request_parsing() -> None:
    assert _service_name(b"") == ""
    assert _service_name(b"\x0a\x03abc") == "abc"
    assert _service_name(b"\x0a\x05ab") is None
    assert _service_name(b"\x10\x01") is None
