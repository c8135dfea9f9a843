"""The ``otlp`` receiver over raw gRPC, raw HTTP and the OpenTelemetry SDK's OTLP exporters."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector.component import Kind, Signal
from collector.errors import RefusedError
from collector.receivers._count import count_items
from collector.receivers._intake import hex_ids_to_base64
from collector.service import Service
from tests.collector.conftest import (
    LOGS_METHOD,
    METRICS_METHOD,
    RECEIVER_ONLY,
    TRACES_METHOD,
    Certs,
    grpc_channel,
    logs_request,
    metrics_request,
    receiver_ports,
    sample,
    trace_request,
    wait_for,
)

ACCEPTED = "otelcol_receiver_accepted_spans_total"
REFUSED = "otelcol_receiver_refused_spans_total"
FAILED = "otelcol_receiver_failed_spans_total"


def labels(transport: str) -> dict[str, str]:
    return {"receiver": "otlp", "transport": transport}


@pytest.fixture
def receiver(run_service: Callable[[str], Service]) -> Service:
    return run_service(RECEIVER_ONLY.format(extra="max_request_size_mib: 1"))


def debug_items(service: Service, signal: Signal) -> int:
    return int(service.component(Kind.EXPORTER, "debug").items[signal])


# -- gRPC ------------------------------------------------------------------------------------------------


def test_grpc_accepts_every_signal_and_counts(receiver: Service) -> None:
    port, _ = receiver_ports(receiver)
    with grpc_channel(port) as channel:
        body = channel.unary_unary(TRACES_METHOD)(trace_request(7).SerializeToString(), timeout=5)
        channel.unary_unary(METRICS_METHOD)(metrics_request(3).SerializeToString(), timeout=5)
        channel.unary_unary(LOGS_METHOD)(logs_request(2).SerializeToString(), timeout=5)
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    assert debug_items(receiver, Signal.TRACES) == 7
    assert debug_items(receiver, Signal.METRICS) == 3
    assert debug_items(receiver, Signal.LOGS) == 2
    assert sample(receiver, ACCEPTED, **labels("grpc")) == 7
    assert sample(receiver, "otelcol_receiver_accepted_metric_points_total", **labels("grpc")) == 3
    assert sample(receiver, "otelcol_receiver_accepted_log_records_total", **labels("grpc")) == 2


def test_grpc_gzip_and_empty_request(receiver: Service) -> None:
    port, _ = receiver_ports(receiver)
    with grpc_channel(port) as channel:
        export = channel.unary_unary(TRACES_METHOD)
        export(trace_request(5).SerializeToString(), timeout=5, compression=grpc.Compression.Gzip)
        assert export(b"", timeout=5) == b""  # an empty request succeeds
    assert debug_items(receiver, Signal.TRACES) == 5


@pytest.mark.parametrize(
    "payload",
    [pytest.param(b"\xff\xfe garbage \x00\x01", id="garbage"), pytest.param(None, id="truncated")],
)
def test_grpc_malformed_is_invalid_argument(receiver: Service, payload: bytes | None) -> None:
    port, _ = receiver_ports(receiver)
    if payload is None:
        full = trace_request(5).SerializeToString()
        payload = full[: len(full) - 7]
    with grpc_channel(port) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(TRACES_METHOD)(payload, timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot decode ExportTraceServiceRequest" in info.value.details()
    assert debug_items(receiver, Signal.TRACES) == 0
    assert sample(receiver, "otelcol_receiver_requests_total", outcome="failure", **labels("grpc")) == 1


def test_grpc_oversize_is_resource_exhausted_even_when_compressed(receiver: Service) -> None:
    port, _ = receiver_ports(receiver)
    big = trace_request(1, attributes=0)
    big.resource_spans[0].scope_spans[0].spans[0].name = "x" * (2 * 1024 * 1024)  # compresses to ~2 KiB
    with grpc_channel(port) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(TRACES_METHOD)(
            big.SerializeToString(), timeout=5, compression=grpc.Compression.Gzip
        )
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert debug_items(receiver, Signal.TRACES) == 0


def test_grpc_partial_success_for_spans_over_the_attribute_limit(
    run_service: Callable[[str], Service],
) -> None:
    service = run_service(RECEIVER_ONLY.format(extra="max_attributes_per_span: 4"))
    port, _ = receiver_ports(service)
    request = trace_request(3, attributes=2)
    request.resource_spans.extend(trace_request(2, attributes=9).resource_spans)
    with grpc_channel(port) as channel:
        body = channel.unary_unary(TRACES_METHOD)(request.SerializeToString(), timeout=5)
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == 2
    assert "more than 4 attributes" in response.partial_success.error_message
    assert debug_items(service, Signal.TRACES) == 3
    assert sample(service, ACCEPTED, **labels("grpc")) == 3
    assert sample(service, FAILED, **labels("grpc")) == 2


def test_grpc_signal_without_pipeline_is_unimplemented(run_service: Callable[[str], Service]) -> None:
    text = RECEIVER_ONLY.format(extra="").split("    metrics:")[0]
    service = run_service(text)
    port, _ = receiver_ports(service)
    with grpc_channel(port) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(LOGS_METHOD)(logs_request().SerializeToString(), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


# -- HTTP ------------------------------------------------------------------------------------------------


def post(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    connection = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        if own:
            connection.close()


PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def test_http_protobuf_gzip_deflate_and_keep_alive(receiver: Service) -> None:
    _, port = receiver_ports(receiver)
    payload = trace_request(4).SerializeToString()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        assert post(port, "/v1/traces", payload, PROTO, conn)[0] == 200
        gz = {**PROTO, "Content-Encoding": "gzip"}
        status, headers, body = post(port, "/v1/traces", gzip.compress(payload), gz, conn)
        assert (status, headers["content-type"]) == (200, "application/x-protobuf")
        assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
        deflate = {**PROTO, "Content-Encoding": "deflate"}
        assert post(port, "/v1/traces", zlib.compress(payload), deflate, conn)[0] == 200
        sock = conn.sock
        assert post(port, "/v1/metrics", metrics_request(2).SerializeToString(), PROTO, conn)[0] == 200
        assert conn.sock is sock  # the same connection served every request
    finally:
        conn.close()
    assert debug_items(receiver, Signal.TRACES) == 12
    assert sample(receiver, ACCEPTED, **labels("http")) == 12


def test_http_chunked_body(receiver: Service) -> None:
    _, port = receiver_ports(receiver)
    payload = trace_request(3).SerializeToString()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST", "/v1/traces", body=iter([payload[:10], payload[10:]]), headers=PROTO, encode_chunked=True
        )
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert debug_items(receiver, Signal.TRACES) == 3


def test_http_json_request_and_response(receiver: Service) -> None:
    _, port = receiver_ports(receiver)
    request = trace_request(2)
    tree = json_format.MessageToDict(request)
    for rs in tree["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:  # OTLP/JSON ids are hex, not base64
                span["traceId"] = bytes.fromhex("0102030405060708090a0b0c0d0e0f10").hex()
                span["spanId"] = "0102030405060708"
                span["kind"] = 2  # enums as integers
    status, headers, body = post(port, "/v1/traces", json.dumps(tree).encode(), JSON)
    assert (status, headers["content-type"], json.loads(body)) == (200, "application/json", {})
    assert debug_items(receiver, Signal.TRACES) == 2


def test_http_json_ids_are_hex() -> None:
    converted = hex_ids_to_base64({"spans": [{"traceId": "00ff", "name": "a"}]})
    assert converted == {"spans": [{"traceId": "AP8=", "name": "a"}]}


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        pytest.param(b"\xff\xfe garbage", PROTO, 400, "cannot decode", id="garbage-protobuf"),
        pytest.param(b"{not json", JSON, 400, "invalid JSON", id="garbage-json"),
        pytest.param(
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5, "startTimeUnixNano": []}]}]}]}',
            JSON,
            400,
            "invalid OTLP/JSON",
            id="json-wrong-field-types",
        ),
        pytest.param(b'{"resourceSpans": "nope"}', JSON, 400, "invalid OTLP/JSON", id="json-wrong-shape"),
        pytest.param(
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            JSON,
            400,
            "hex",
            id="json-bad-trace-id",
        ),
        pytest.param(b"[]", JSON, 400, "expected a JSON object", id="json-array"),
        pytest.param(
            b'{"resourceSpans":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            JSON,
            400,
            "nested too deeply",
            id="json-deeply-nested",
        ),
        pytest.param(
            b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": '
            + b'{"arrayValue": {"values": [' * 900
            + b"]}}" * 900
            + b"}]}}]}",
            JSON,
            400,
            "nested too deeply",
            id="json-deep-any-values",
        ),
        pytest.param(
            b"\x1f\x8b\x08 not gzip", {**PROTO, "Content-Encoding": "gzip"}, 400, "decompress", id="bad-gzip"
        ),
    ],
)
def test_http_malformed_is_400_with_message(
    receiver: Service, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    _, port = receiver_ports(receiver)
    got, response_headers, data = post(port, "/v1/traces", body, headers)
    assert got == status
    if response_headers["content-type"] == "application/json":
        assert message in json.loads(data)["message"]
    else:
        assert message in status_pb2.Status.FromString(data).message
    assert debug_items(receiver, Signal.TRACES) == 0


def test_http_truncated_protobuf_is_400(receiver: Service) -> None:
    _, port = receiver_ports(receiver)
    full = trace_request(5).SerializeToString()
    status, _, data = post(port, "/v1/traces", full[:-7], PROTO)
    assert status == 400
    assert status_pb2.Status.FromString(data).code == 3  # INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        pytest.param("/v1/traces", {"Content-Type": "text/plain"}, 415, id="wrong-content-type"),
        pytest.param("/v1/traces", {**PROTO, "Content-Encoding": "br"}, 415, id="unknown-encoding"),
        pytest.param("/v1/spans", PROTO, 404, id="unknown-path"),
    ],
)
def test_http_rejects_non_otlp_requests(
    receiver: Service, path: str, headers: dict[str, str], status: int
) -> None:
    _, port = receiver_ports(receiver)
    assert post(port, path, b"x", headers)[0] == status


def test_http_length_required_and_get_not_allowed(receiver: Service) -> None:
    _, port = receiver_ports(receiver)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", "/v1/traces")
        conn.putheader("Content-Type", "application/x-protobuf")
        conn.endheaders()
        assert conn.getresponse().status == 411
    finally:
        conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/traces")
        assert conn.getresponse().status == 405
    finally:
        conn.close()


def test_http_oversize_is_413_and_gzip_bomb_is_capped(receiver: Service) -> None:
    _, port = receiver_ports(receiver)
    too_big = b"\x00" * (1024 * 1024 + 1)
    assert post(port, "/v1/traces", too_big, PROTO)[0] == 413
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 128 * 1024
    status, _, data = post(port, "/v1/traces", bomb, {**PROTO, "Content-Encoding": "gzip"})
    assert status == 413
    assert "exceeds the limit" in status_pb2.Status.FromString(data).message


def test_counting_without_decoding_matches_the_real_count() -> None:
    request = trace_request(5)
    request.resource_spans.extend(trace_request(3).resource_spans)
    assert count_items(Signal.TRACES, request.SerializeToString()) == 8
    assert count_items(Signal.METRICS, metrics_request(4).SerializeToString()) == 4
    assert count_items(Signal.LOGS, logs_request(3).SerializeToString()) == 3
    assert count_items(Signal.TRACES, b"\xff\xff\xff") == 0


# -- backpressure ----------------------------------------------------------------------------------------


class _Refuser:
    """A consumer that refuses everything, like a full exporter queue."""

    def consume(self, batch: Any) -> None:
        raise RefusedError("queue is full", retry_after_s=2.5)


@pytest.fixture
def refusing(run_service: Callable[[str], Service]) -> Iterator[Service]:
    service = run_service(RECEIVER_ONLY.format(extra=""))
    receiver = service.component(Kind.RECEIVER, "otlp")
    receiver.bind({Signal.TRACES: _Refuser()})
    yield service


def test_refusal_is_unavailable_with_retry_info_on_grpc(refusing: Service) -> None:
    port, _ = receiver_ports(refusing)
    with grpc_channel(port) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(TRACES_METHOD)(trace_request(6).SerializeToString(), timeout=5)
    error: Any = info.value
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    trailers = dict(error.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert status.code == 14 and status.details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 2 and retry.retry_delay.nanos == 500_000_000
    assert error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == retry
    assert sample(refusing, REFUSED, **labels("grpc")) == 6


def test_refusal_is_503_with_retry_after_on_http(refusing: Service) -> None:
    _, port = receiver_ports(refusing)
    status, headers, data = post(port, "/v1/traces", trace_request(4).SerializeToString(), PROTO)
    assert (status, headers["retry-after"]) == (503, "3")
    assert status_pb2.Status.FromString(data).code == 14
    status, headers, data = post(port, "/v1/traces", json.dumps({"resourceSpans": []}).encode(), JSON)
    assert status == 200  # empty: nothing to refuse
    assert sample(refusing, REFUSED, **labels("http")) == 4


def test_in_flight_budget_refuses_before_decoding(run_service: Callable[[str], Service]) -> None:
    service = run_service(RECEIVER_ONLY.format(extra="max_concurrent_requests: 1"))
    port, http_port = receiver_ports(service)
    intake = service.component(Kind.RECEIVER, "otlp")._intake
    assert intake.admit("grpc", Signal.TRACES, 10) == ("", None)  # hold the only slot
    try:
        with grpc_channel(port) as channel, pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(TRACES_METHOD)(trace_request(3).SerializeToString(), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "requests in flight" in info.value.details()
        status, headers, _ = post(http_port, "/v1/traces", trace_request(2).SerializeToString(), PROTO)
        assert status == 503 and headers["retry-after"] == "1"
    finally:
        intake.release(10)
    assert sample(service, REFUSED, **labels("grpc")) == 3
    assert sample(service, REFUSED, **labels("http")) == 2
    with grpc_channel(port) as channel:
        channel.unary_unary(TRACES_METHOD)(trace_request(3).SerializeToString(), timeout=5)
    assert debug_items(service, Signal.TRACES) == 3


# -- auth and TLS ----------------------------------------------------------------------------------------

AUTH = """
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:0", auth: {{tokens: [s3cret-ingest-token-0001]}} {grpc_tls}}}
      http: {{endpoint: "127.0.0.1:0", auth: {{tokens: [s3cret-ingest-token-0001]}} {http_tls}}}
exporters:
  debug: {{}}
service:
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"""


def test_bearer_token_required_on_both_transports(run_service: Callable[[str], Service]) -> None:
    service = run_service(AUTH.format(grpc_tls="", http_tls=""))
    port, http_port = receiver_ports(service)
    payload = trace_request(2).SerializeToString()
    with grpc_channel(port) as channel:
        export = channel.unary_unary(TRACES_METHOD)
        for metadata in [(), (("authorization", "Bearer wrong"),)]:
            with pytest.raises(grpc.RpcError) as info:
                export(payload, timeout=5, metadata=metadata)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        export(payload, timeout=5, metadata=(("authorization", "Bearer s3cret-ingest-token-0001"),))
    assert post(http_port, "/v1/traces", payload, PROTO)[0] == 401
    assert post(http_port, "/v1/traces", payload, {**PROTO, "Authorization": "Bearer nope"})[0] == 401
    assert (
        post(http_port, "/v1/traces", payload, {**PROTO, "Authorization": "Bearer s3cret-ingest-token-0001"})[
            0
        ]
        == 200
    )
    assert sample(service, "otel_llm_receiver_unauthenticated_total", **labels("grpc")) == 2
    assert sample(service, "otel_llm_receiver_unauthenticated_total", **labels("http")) == 2
    assert debug_items(service, Signal.TRACES) == 4


SCOPED = """
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:0", auth: {{tokens_file: "{tokens}"}}}}
      http: {{endpoint: "127.0.0.1:0", auth: {{tokens_file: "{tokens}"}}}}
extensions:
  feedback: {{endpoint: "127.0.0.1:0", auth: {{tokens_file: "{tokens}"}}}}
exporters:
  debug: {{}}
service:
  extensions: [feedback]
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"""
INGEST_TOKEN = "ingest-token-0123456789"
FEEDBACK_TOKEN = "feedback-token-0123456789"


def _feedback(service: Service, token: str) -> int:
    address = service.component(Kind.EXTENSION, "feedback").address
    conn = http.client.HTTPConnection(*address, timeout=5)
    try:
        body = json.dumps({"trace_id": "0" * 31 + "1", "kind": "copy"}).encode()
        conn.request(
            "POST",
            "/v1/feedback",
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_scoped_tokens_ingest_on_receivers_feedback_on_feedback(
    run_service: Callable[[str], Service], tmp_path: Any
) -> None:
    """One shared tokens file: the ingest token only ingests, the feedback token only posts feedback;
    a known token on the wrong endpoint is 403 / PERMISSION_DENIED, counted apart from 401s."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ingest {INGEST_TOKEN} app\nfeedback {FEEDBACK_TOKEN} web\n", encoding="utf-8")
    service = run_service(SCOPED.format(tokens=tokens))
    port, http_port = receiver_ports(service)
    payload = trace_request(2).SerializeToString()
    with grpc_channel(port) as channel:
        export = channel.unary_unary(TRACES_METHOD)
        export(payload, timeout=5, metadata=(("authorization", f"Bearer {INGEST_TOKEN}"),))
        with pytest.raises(grpc.RpcError) as info:
            export(payload, timeout=5, metadata=(("authorization", f"Bearer {FEEDBACK_TOKEN}"),))
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "ingest scope" in (info.value.details() or "")
    assert (
        post(http_port, "/v1/traces", payload, {**PROTO, "Authorization": f"Bearer {INGEST_TOKEN}"})[0] == 200
    )
    status, headers, body = post(
        http_port, "/v1/traces", payload, {**PROTO, "Authorization": f"Bearer {FEEDBACK_TOKEN}"}
    )
    assert status == 403 and "www-authenticate" not in headers
    assert status_pb2.Status.FromString(body).code == 7  # PERMISSION_DENIED
    assert _feedback(service, INGEST_TOKEN) == 403
    assert _feedback(service, FEEDBACK_TOKEN) == 202
    assert _feedback(service, "unknown-token-0123456789") == 401
    for transport in ("grpc", "http"):
        assert sample(service, "otel_llm_receiver_forbidden_total", **labels(transport)) == 1
        assert sample(service, "otel_llm_receiver_unauthenticated_total", **labels(transport)) == 0
    assert debug_items(service, Signal.TRACES) == 4


def test_receiver_auth_config_problems(tmp_path: Any) -> None:
    """Short tokens, a missing token file and a scope other than ingest are config errors, not 401s later."""
    from collector.configuration import parse_config
    from collector.errors import ConfigError

    legacy = tmp_path / "legacy"
    legacy.write_text(f"{INGEST_TOKEN}\n\nshort\n", encoding="utf-8")
    text = f"""
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:0", auth: {{tokens: [short]}}}}
      http: {{endpoint: "127.0.0.1:0", auth: {{scope: feedback, token_file: "{legacy}"}}}}
exporters:
  debug: {{}}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "<test>")
    assert info.value.problems == [
        "<test>: receivers::otlp::protocols::grpc::auth::tokens::0: expected at least 16 characters, got 5",
        "<test>: receivers::otlp::protocols::http::auth::token_file: line 3: token shorter than 16 characters",
        "<test>: receivers::otlp::protocols::http::auth::scope: this endpoint requires scope ingest, got feedback",
    ]


def test_legacy_token_file_still_authenticates(run_service: Callable[[str], Service], tmp_path: Any) -> None:
    """`token_file` (one plain token per line), the receivers' earlier key, gives each token `ingest`."""
    legacy = tmp_path / "legacy"
    legacy.write_text(f"\n{INGEST_TOKEN}\n", encoding="utf-8")
    service = run_service(
        RECEIVER_ONLY.format(extra="").replace(
            'http: {endpoint: "127.0.0.1:0"}',
            f'http: {{endpoint: "127.0.0.1:0", auth: {{token_file: "{legacy}"}}}}',
        )
    )
    _, http_port = receiver_ports(service)
    payload = trace_request(1).SerializeToString()
    assert (
        post(http_port, "/v1/traces", payload, {**PROTO, "Authorization": f"Bearer {INGEST_TOKEN}"})[0] == 200
    )
    assert (
        post(http_port, "/v1/traces", payload, {**PROTO, "Authorization": "Bearer other-token-01234567"})[0]
        == 401
    )


def _tls_yaml(cert: str, key: str, client_ca: str | None = None) -> str:
    text = f", tls: {{cert_file: {cert}, key_file: {key}"
    if client_ca:
        text += f", client_ca_file: {client_ca}"
    return text + "}"


def test_tls_and_mtls_and_expired_certificates(run_service: Callable[[str], Service], certs: Certs) -> None:
    tls = _tls_yaml(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    service = run_service(AUTH.format(grpc_tls=tls, http_tls=tls))
    port, http_port = receiver_ports(service)
    payload = trace_request(2).SerializeToString()
    auth = (("authorization", "Bearer s3cret-ingest-token-0001"),)
    ca = certs.ca.read_bytes()

    good = grpc.ssl_channel_credentials(ca, certs.client_key.read_bytes(), certs.client_cert.read_bytes())
    with grpc_channel(port, good) as channel:
        channel.unary_unary(TRACES_METHOD)(payload, timeout=5, metadata=auth)
    expired = grpc.ssl_channel_credentials(
        ca, certs.expired_client_key.read_bytes(), certs.expired_client_cert.read_bytes()
    )
    no_client_cert = grpc.ssl_channel_credentials(ca)
    for credentials in (expired, no_client_cert):
        with grpc_channel(port, credentials) as channel, pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(TRACES_METHOD)(payload, timeout=5, metadata=auth)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE  # handshake refused

    def https(cert: Any, key: Any) -> int:
        context = ssl.create_default_context(cafile=str(certs.ca))
        if cert is not None:
            context.load_cert_chain(str(cert), str(key))
        conn = http.client.HTTPSConnection("127.0.0.1", http_port, timeout=10, context=context)
        try:
            headers = {**PROTO, "Authorization": "Bearer s3cret-ingest-token-0001"}
            return post(http_port, "/v1/traces", payload, headers, conn)[0]
        finally:
            conn.close()

    assert https(certs.client_cert, certs.client_key) == 200
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https(certs.expired_client_cert, certs.expired_client_key)
    assert debug_items(service, Signal.TRACES) == 4


def test_expired_server_certificate_is_rejected_by_clients(
    run_service: Callable[[str], Service], certs: Certs
) -> None:
    tls = _tls_yaml(str(certs.expired_cert), str(certs.expired_key))
    service = run_service(AUTH.format(grpc_tls=tls, http_tls=tls))
    port, http_port = receiver_ports(service)
    payload = trace_request(2).SerializeToString()
    with grpc_channel(port, grpc.ssl_channel_credentials(certs.ca.read_bytes())) as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(TRACES_METHOD)(
                payload, timeout=5, metadata=(("authorization", "Bearer s3cret-ingest-token-0001"),)
            )
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    context = ssl.create_default_context(cafile=str(certs.ca))
    conn = http.client.HTTPSConnection("127.0.0.1", http_port, timeout=10, context=context)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        conn.request("POST", "/v1/traces", body=payload, headers=PROTO)
    conn.close()
    assert debug_items(service, Signal.TRACES) == 0


# -- the OpenTelemetry SDK as the client ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporters_deliver(receiver: Service, transport: str) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    port, http_port = receiver_ports(receiver)
    exporter: Any
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter(
            endpoint=f"127.0.0.1:{port}", insecure=True, compression=grpc.Compression.Gzip
        )
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(
            endpoint=f"http://127.0.0.1:{http_port}/v1/traces", compression=Compression.Gzip
        )
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for index in range(5):
        with tracer.start_as_current_span(f"op-{index}") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
    provider.shutdown()
    assert debug_items(receiver, Signal.TRACES) == 5
    assert sample(receiver, ACCEPTED, **labels(transport)) == 5


def _capped(run_service: Callable[[str], Service]) -> Service:
    text = RECEIVER_ONLY.format(extra="").replace(
        'http: {endpoint: "127.0.0.1:0"}', 'http: {endpoint: "127.0.0.1:0", max_connections: 2}'
    )
    return run_service(text)


def test_http_at_the_connection_cap_a_waiting_connection_makes_room(
    run_service: Callable[[str], Service],
) -> None:
    service = _capped(run_service)
    _, port = receiver_ports(service)
    payload = trace_request(1).SerializeToString()
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    slow = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        assert post(port, "/v1/traces", payload, PROTO, idle)[0] == 200  # then idle in keep-alive
        slow.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")  # a head that never ends (slowloris)
        time.sleep(0.2)
        assert post(port, "/v1/traces", payload, PROTO)[0] == 200  # evicts the longest waiting
        assert post(port, "/v1/traces", payload, PROTO)[0] == 200  # and again
    finally:
        idle.close()
        slow.close()
    assert debug_items(service, Signal.TRACES) == 3


def test_http_at_the_connection_cap_with_every_connection_busy_new_ones_are_closed(
    run_service: Callable[[str], Service],
) -> None:
    service = _capped(run_service)
    _, port = receiver_ports(service)
    release = threading.Event()

    class Blocking:
        def consume(self, batch: Any) -> None:
            release.wait(10)

    service.component(Kind.RECEIVER, "otlp").bind({Signal.TRACES: Blocking()})
    payload = trace_request(1).SerializeToString()
    with ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(post, port, "/v1/traces", payload, PROTO) for _ in range(2)]
        time.sleep(0.5)
        try:
            with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
                post(port, "/v1/traces", payload, PROTO)
        finally:
            release.set()
        assert [future.result(10)[0] for future in busy] == [200, 200]
    assert wait_for(lambda: _posts_ok(port, payload))
    assert sample(service, "otelcol_receiver_requests_total", outcome="refused", **labels("http")) >= 1


def _posts_ok(port: int, payload: bytes) -> bool:
    try:
        return post(port, "/v1/traces", payload, PROTO)[0] == 200
    except (ConnectionError, http.client.HTTPException, OSError):
        return False


def test_refusals_are_logged_once_then_summed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from collector.receivers import _intake

    monkeypatch.setattr(_intake, "_LOG_EVERY_S", 0.2)
    summary = _intake._Summary(logging.getLogger("test.summary"), "otlp")
    with caplog.at_level(logging.WARNING, logger="test.summary"):
        for _ in range(3):
            summary.add("refused", Signal.TRACES, "queue is full", 10)
        assert wait_for(lambda: len(caplog.records) == 2, timeout_s=5)
    first, later = (record.fields for record in caplog.records)  # type: ignore[attr-defined]
    assert (first["requests"], first["items"]) == (1, 10)
    assert (later["requests"], later["items"], later["reason"]) == (2, 20, "queue is full")


class _RefuseFirst:
    """Refuses the first batch (like a full queue that then drains), passes the rest on."""

    def __init__(self, downstream: Any) -> None:
        self.downstream = downstream
        self.refused = 0

    def consume(self, batch: Any) -> None:
        if not self.refused:
            self.refused += 1
            raise RefusedError("busy for a moment", retry_after_s=0.2)
        self.downstream.consume(batch)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporters_retry_after_a_refusal_and_deliver(receiver: Service, transport: str) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    port, http_port = receiver_ports(receiver)
    otlp = receiver.component(Kind.RECEIVER, "otlp")
    gate = _RefuseFirst(receiver.component(Kind.EXPORTER, "debug"))
    otlp.bind({Signal.TRACES: gate})
    exporter: Any
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("op"):
        pass
    provider.shutdown()
    assert gate.refused == 1
    assert debug_items(receiver, Signal.TRACES) == 1  # delivered by the SDK's retry
    assert sample(receiver, REFUSED, **labels(transport)) == 1
    assert sample(receiver, ACCEPTED, **labels(transport)) == 1


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_port_in_use_fails_the_start(run_service: Callable[[str], Service], transport: str) -> None:
    from collector.configuration import parse_config
    from collector.errors import ComponentError

    first = run_service(RECEIVER_ONLY.format(extra=""))
    grpc_port, http_port = receiver_ports(first)
    port = grpc_port if transport == "grpc" else http_port
    text = RECEIVER_ONLY.format(extra="").replace(
        f'{transport}: {{endpoint: "127.0.0.1:0"}}', f'{transport}: {{endpoint: "127.0.0.1:{port}"}}'
    )
    second = Service(parse_config(text))
    with pytest.raises(ComponentError, match="cannot listen"):
        second.start()


def test_http_a_body_trickled_too_slowly_is_cut_off(run_service: Callable[[str], Service]) -> None:
    text = RECEIVER_ONLY.format(extra="").replace(
        'http: {endpoint: "127.0.0.1:0"}', 'http: {endpoint: "127.0.0.1:0", body_timeout: 500ms}'
    )
    service = run_service(text)
    _, port = receiver_ports(service)
    payload = trace_request(3).SerializeToString()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {len(payload)}\r\n\r\n"
        sock.sendall(head.encode() + payload[:5])
        started = time.monotonic()
        try:
            for byte in payload[5:]:
                time.sleep(0.05)
                sock.sendall(bytes([byte]))
        except OSError:
            pass  # the server hung up: expected
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # closed without an answer
        assert time.monotonic() - started < 5
    assert debug_items(service, Signal.TRACES) == 0
    assert post(port, "/v1/traces", payload, PROTO)[0] == 200  # others are served as usual
