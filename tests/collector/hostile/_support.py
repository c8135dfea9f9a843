"""Shared pieces of the hostile-input tests: a full service on loopback, raw clients, payloads, mutations."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector.component import Kind
from collector.configuration import parse_config
from collector.service import Service

SLOW = os.environ.get("OTEL_LLM_SLOW_TESTS") == "1"
FEEDBACK_TOKEN = "feedback-token-for-hostile-tests"

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"

# The real processing chain, so hostile content reaches the processors too, not only the decoder.
CONFIG = f"""
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}, http: {{endpoint: "127.0.0.1:0"}}}}
    max_request_size_mib: 4
processors:
  pii: {{max_value_kib: 256}}
  genai_metrics: {{}}
exporters:
  debug: {{}}
extensions:
  feedback:
    endpoint: "127.0.0.1:0"
    auth: {{tokens: ["{FEEDBACK_TOKEN}"]}}
service:
  extensions: [feedback]
  telemetry: {{metrics: {{enabled: false}}, logs: {{level: error}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [pii, genai_metrics], exporters: [debug]}}
    logs: {{receivers: [otlp], processors: [pii], exporters: [debug]}}
    metrics: {{receivers: [otlp], exporters: [debug]}}
"""


@dataclass
class Endpoints:
    service: Service
    grpc_port: int
    http_port: int
    feedback_port: int
    channel: grpc.Channel

    def grpc(self, method: str, body: bytes, gzip_it: bool = False) -> grpc.StatusCode:
        """Send raw bytes to a gRPC method; the status code (OK when it succeeded)."""
        call = self.channel.unary_unary(method)
        try:
            call(body, timeout=60, compression=grpc.Compression.Gzip if gzip_it else None)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
        return grpc.StatusCode.OK

    def http(self, path: str, body: bytes, headers: dict[str, str] | None = None, port: int = 0) -> int:
        """POST raw bytes; the HTTP status, or 0 when the server closed without answering."""
        connection = http.client.HTTPConnection("127.0.0.1", port or self.http_port, timeout=60)
        try:
            connection.request("POST", path, body=body, headers=headers or {})
            response = connection.getresponse()
            response.read()
            return response.status
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            return 0
        finally:
            connection.close()

    def http_early_answer(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """Declare the whole body but send only its first 64 KiB, then read the answer.

        For bodies over the limit, which the receiver answers before reading them: checks the status
        code alone, whatever the receiver does with the rest of the body (test_over_limit_answer_
        reaches_a_client_still_sending checks the client that keeps sending).
        """
        with socket.create_connection(("127.0.0.1", self.http_port), timeout=30) as sock:
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
            sock.sendall(head.encode() + body[: 64 * 1024])
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        parts = data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    def feedback(self, body: bytes, token: str = FEEDBACK_TOKEN) -> int:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        return self.http("/v1/feedback", body, headers, port=self.feedback_port)

    def alive(self) -> bool:
        """Both transports still take a valid request."""
        body = genai_request().SerializeToString()
        proto = {"Content-Type": "application/x-protobuf"}
        return self.grpc(TRACES, body) is grpc.StatusCode.OK and self.http("/v1/traces", body, proto) == 200


@contextmanager
def running_service() -> Iterator[Endpoints]:
    service = Service(parse_config(CONFIG, "<hostile>"))
    service.start()
    receiver = service.component(Kind.RECEIVER, "otlp")
    feedback = service.component(Kind.EXTENSION, "feedback")
    channel = grpc.insecure_channel(
        f"127.0.0.1:{receiver.grpc_port}", options=[("grpc.max_send_message_length", 64 << 20)]
    )
    try:
        yield Endpoints(service, receiver.grpc_port, receiver.http_port, feedback.address[1], channel)
    finally:
        channel.close()
        service.shutdown(2.0)


def kv(key: str, value: Any) -> dict[str, Any]:
    """An OTLP/JSON KeyValue."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


GENAI_ATTRIBUTES = [
    kv("gen_ai.operation.name", "chat"),
    kv("gen_ai.provider.name", "openai"),
    kv("gen_ai.request.model", "gpt-4o-mini"),
    kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
    kv("gen_ai.usage.input_tokens", 42),
    kv("gen_ai.usage.output_tokens", 7),
    kv(
        "gen_ai.input.messages",
        json.dumps([{"role": "user", "parts": [{"type": "text", "content": "I'm ann@example.org"}]}]),
    ),
]


def genai_json(attributes: list[dict[str, Any]] | None = None, service: str = "shop") -> dict[str, Any]:
    """One GenAI client span as an OTLP/JSON ExportTraceServiceRequest tree."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv("service.name", service)]},
                "scopeSpans": [
                    {
                        "scope": {"name": "otel_llm"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat gpt-4o-mini",
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": GENAI_ATTRIBUTES if attributes is None else attributes,
                            }
                        ],
                    }
                ],
            }
        ]
    }


def genai_request(
    spans: int = 3, service: str = "shop", model: str = "gpt-4o-mini"
) -> ExportTraceServiceRequest:
    """Protobuf GenAI spans with content, usage and a log-ish event (what the instrumentor sends)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attribute = rs.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name = "otel_llm"
    for index in range(spans):
        span = ss.spans.add()
        span.trace_id = random.randbytes(16)
        span.span_id = random.randbytes(8)
        span.name = f"chat {model}"
        span.kind = Span.SPAN_KIND_CLIENT
        span.start_time_unix_nano = 1_700_000_000_000_000_000 + index
        span.end_time_unix_nano = span.start_time_unix_nano + 500_000_000
        for key, value in (
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", model),
            (
                "gen_ai.input.messages",
                '[{"role":"user","parts":[{"type":"text","content":"card 4111 1111 1111 1111"}]}]',
            ),
        ):
            attribute = span.attributes.add()
            attribute.key, attribute.value.string_value = key, value
        for key, number in (("gen_ai.usage.input_tokens", 40 + index), ("gen_ai.usage.output_tokens", 9)):
            attribute = span.attributes.add()
            attribute.key, attribute.value.int_value = key, number
        event = span.events.add()
        event.name = "gen_ai.user.message"
        attribute = event.attributes.add()
        attribute.key, attribute.value.string_value = "content", "mail bob@example.org"
    return request


def logs_request() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.event_name = "gen_ai.client.inference.operation.details"
    record.body.string_value = "user 203.0.113.9 said hi"
    return request


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: flip, insert, delete, duplicate a slice, truncate, or splice in a varint."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            out.extend(rng.randbytes(rng.randint(1, 8)))
            continue
        position = rng.randrange(len(out))
        action = rng.randrange(6)
        if action == 0:
            out[position] ^= 1 << rng.randrange(8)
        elif action == 1:
            out[position:position] = rng.randbytes(rng.randint(1, 8))
        elif action == 2:
            del out[position : position + rng.randint(1, 8)]
        elif action == 3:
            end = min(len(out), position + rng.randint(1, 64))
            out[position:position] = out[position:end] * rng.randint(1, 4)
        elif action == 4:
            del out[position:]
        else:
            out[position : position + 1] = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])  # a huge length
    return bytes(out)


def gzip_bomb(size: int) -> bytes:
    return gzip.compress(b"\x00" * size, compresslevel=9)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
