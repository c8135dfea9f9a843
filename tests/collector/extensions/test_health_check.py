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


# -- access: the detail is admin information -------------------------------------------------------------

ADMIN_TOKEN = "admin-token-0123456789ab"
INGEST_TOKEN = "ingest-token-0123456789"

WITH_AUTH = CONFIG.replace(
    'health_check: {endpoint: "127.0.0.1:0"}',
    "health_check:\n"
    '    endpoint: "127.0.0.1:0"\n'
    f"    auth: {{tokens: [{ADMIN_TOKEN}, {{token: {INGEST_TOKEN}, scopes: [ingest]}}]}}",
)


def get_with(port: int, token: str | None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_detail_only_for_loopback_peers_and_admin_tokens(run_service: Callable[[str], Service]) -> None:
    service = run_service(WITH_AUTH)
    extension = service.component(Kind.EXTENSION, "health_check")
    # The decision itself, for peers a test cannot be: remote addresses as http.server and gRPC give them.
    assert extension.detail_allowed(("127.0.0.1", 50000), None)
    assert extension.detail_allowed(("::1", 50000, 0, 0), None)
    assert not extension.detail_allowed(("10.1.2.3", 50000), None)
    assert not extension.detail_allowed("ipv4:10.1.2.3:50000", None)
    assert not extension.detail_allowed(("10.1.2.3", 50000), f"Bearer {INGEST_TOKEN}")  # 403-class token
    assert not extension.detail_allowed(("10.1.2.3", 50000), "Bearer wrong-token-0123456789")
    assert extension.detail_allowed(("10.1.2.3", 50000), f"Bearer {ADMIN_TOKEN}")
    # From this loopback client: the detail.
    status, body = get_with(extension.port, None)
    assert status == 200 and set(body) == {"status", "refusing", "reasons", "uptime_s"}


def test_remote_peer_gets_only_the_status(
    run_service: Callable[[str], Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler, with the peer seen as remote (a test cannot connect from a routable address)."""
    import collector.extensions.health_check as module

    monkeypatch.setattr(module, "peer_is_loopback", lambda peer: False)
    service = run_service(WITH_AUTH)
    port = service.component(Kind.EXTENSION, "health_check").port
    holder = service.status_holder
    holder.refusing = True
    holder.reasons["memory_limiter/x"] = "memory above soft limit"
    try:
        assert get_with(port, None) == (503, {"status": "ready"})  # the code still says refusing
        assert get_with(port, INGEST_TOKEN) == (503, {"status": "ready"})
        status, body = get_with(port, ADMIN_TOKEN)
        assert status == 503 and body["reasons"] == {"memory_limiter/x": "memory above soft limit"}
    finally:
        holder.refusing = False
        holder.reasons.clear()
    assert get_with(port, None) == (200, {"status": "ready"})


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        pytest.param({"endpoint": "0.0.0.0:13133"}, None, id="probe-only-anywhere"),
        pytest.param({"endpoint": "127.0.0.1:13133", "auth": {"tokens": [ADMIN_TOKEN]}}, None, id="loopback"),
        pytest.param(
            {"endpoint": "0.0.0.0:13133", "auth": {"tokens": [ADMIN_TOKEN]}},
            "endpoint: admin endpoints listen on loopback only unless allow_remote is true",
            id="remote-auth-without-allow-remote",
        ),
        pytest.param(
            {"endpoint": "0.0.0.0:13133", "allow_remote": True},
            "auth: a remote admin endpoint needs auth with scope admin",
            id="allow-remote-without-auth",
        ),
        pytest.param(
            {"endpoint": "0.0.0.0:13133", "allow_remote": True, "auth": {"tokens": [ADMIN_TOKEN]}},
            None,
            id="allow-remote-with-admin-token",
        ),
        pytest.param(
            {"endpoint": "127.0.0.1:13133", "auth": {"scope": "ingest", "tokens": [ADMIN_TOKEN]}},
            "auth::scope: this endpoint requires scope admin, got ingest",
            id="wrong-scope",
        ),
    ],
)
def test_admin_endpoint_rule_in_config(settings: dict[str, object], problem: str | None) -> None:
    from collector.extensions.health_check import HealthCheckConfig

    problems = [f"{key}: {message}" for key, message in HealthCheckConfig.model_validate(settings).problems()]
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem)
