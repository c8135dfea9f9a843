"""Three otel-llm instances behind a routing front that hashes service.name: one writer per series.

The front stands in for the OpenTelemetry Collector's ``loadbalancing`` exporter with ``routing_key:
service``: it splits each export request by resource, places ``service.name`` on a consistent-hash
ring of the instances (100 points each) and forwards each part to its owner. After steady traffic from
many services and models, the Prometheus pages of the three instances must add up exactly to what
was sent, and no series may appear on two of them. A control run routes at random and must show
series with several writers, so the check is known to catch a split.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from collector.component import Kind
from collector.configuration import parse_config
from collector.service import Service

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT = f"/{SERVICE}/Export"
INSTANCES = 3
SERVICES, MODELS, REQUESTS = 40, 4, 80

CONFIG = """
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
processors:
  pii: {}
  genai_metrics: {}
exporters:
  prometheus: {endpoint: "127.0.0.1:0"}
service:
  telemetry: {metrics: {enabled: false}, logs: {level: error}}
  pipelines:
    traces: {receivers: [otlp], processors: [pii, genai_metrics], exporters: [prometheus]}
"""


def _point(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class Ring:
    """Consistent hashing of routing keys onto members, like the loadbalancing exporter's ring."""

    def __init__(self, members: list[str], points: int = 100) -> None:
        self._ring = sorted(
            (_point(f"{member}#{index}"), member) for member in members for index in range(points)
        )
        self._keys = [point for point, _ in self._ring]

    def owner(self, key: str) -> str:
        index = bisect.bisect(self._keys, _point(key)) % len(self._ring)
        return self._ring[index][1]


class RoutingFront:
    """A gRPC OTLP trace endpoint that routes each resource by its service.name."""

    def __init__(self, backends: dict[str, int], by_service: bool = True) -> None:
        self.ring = Ring(sorted(backends))
        self._members = sorted(backends)
        self.by_service = by_service
        self._rng = random.Random(0)
        self._channels = {name: grpc.insecure_channel(f"127.0.0.1:{port}") for name, port in backends.items()}
        self._exports = {name: channel.unary_unary(EXPORT) for name, channel in self._channels.items()}
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self._export)}
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _export(self, body: bytes, context: grpc.ServicerContext) -> bytes:
        request = ExportTraceServiceRequest.FromString(body)
        parts: dict[str, ExportTraceServiceRequest] = defaultdict(ExportTraceServiceRequest)
        for resource_spans in request.resource_spans:
            service = next(
                (
                    kv.value.string_value
                    for kv in resource_spans.resource.attributes
                    if kv.key == "service.name"
                ),
                "",
            )
            owner = self.ring.owner(service) if self.by_service else self._rng.choice(self._members)
            parts[owner].resource_spans.append(resource_spans)
        for owner, part in parts.items():
            try:
                self._exports[owner](part.SerializeToString(), timeout=30)
            except grpc.RpcError as exc:  # the sender retries the whole request, as with the real exporter
                context.abort(exc.code(), f"backend {owner}: {exc.details()}")
        return b""

    def close(self) -> None:
        self.server.stop(1).wait()
        for channel in self._channels.values():
            channel.close()


@pytest.fixture(params=["by-service", "random"])
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Service], RoutingFront]]:
    services: dict[str, Service] = {}
    front: RoutingFront | None = None
    try:
        for index in range(INSTANCES):
            name = f"otel-llm-{index}"
            services[name] = Service(parse_config(CONFIG, "<scaleout>"), instance_id=name)
            services[name].start()
        ports = {name: s.component(Kind.RECEIVER, "otlp").grpc_port for name, s in services.items()}
        front = RoutingFront(ports, by_service=request.param == "by-service")
        front.server.start()
        yield services, front
    finally:
        if front is not None:
            front.close()
        for service in services.values():
            service.shutdown(2.0)


def _request(rng: random.Random, sent: Counter[tuple[str, str]], tokens: Counter[tuple[str, str]]) -> bytes:
    request = ExportTraceServiceRequest()
    for _ in range(6):
        service = f"svc-{rng.randrange(SERVICES)}"
        rs = request.resource_spans.add()
        attribute = rs.resource.attributes.add()
        attribute.key, attribute.value.string_value = "service.name", service
        ss = rs.scope_spans.add()
        for _ in range(5):
            model = f"model-{rng.randrange(MODELS)}"
            span = ss.spans.add()
            span.trace_id, span.span_id = rng.randbytes(16), rng.randbytes(8)
            span.name, span.kind = f"chat {model}", Span.SPAN_KIND_CLIENT
            span.start_time_unix_nano = 1_700_000_000_000_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(10**8, 10**9)
            used = rng.randrange(1, 5000)
            for key, value in (
                ("gen_ai.operation.name", "chat"),
                ("gen_ai.provider.name", "openai"),
                ("gen_ai.request.model", model),
            ):
                attribute = span.attributes.add()
                attribute.key, attribute.value.string_value = key, value
            attribute = span.attributes.add()
            attribute.key, attribute.value.int_value = "gen_ai.usage.input_tokens", used
            sent[(service, model)] += 1
            tokens[(service, model)] += used
    return request.SerializeToString()


def _series(page: str, family: str, **match: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one family by their labels without the instance id (the series' identity)."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for metric in text_string_to_metric_families(page):
        for sample in metric.samples:
            if sample.name != family or any(sample.labels.get(k) != v for k, v in match.items()):
                continue
            labels: dict[str, Any] = dict(sample.labels)
            labels.pop("otel_llm_instance_id")
            out[tuple(sorted(labels.items()))] = sample.value
    return out


def test_each_series_has_one_writer_and_totals_match(
    cluster: tuple[dict[str, Service], RoutingFront],
) -> None:
    services, front = cluster
    rng = random.Random(3)
    sent: Counter[tuple[str, str]] = Counter()
    tokens: Counter[tuple[str, str]] = Counter()
    with grpc.insecure_channel(f"127.0.0.1:{front.port}") as channel:
        export = channel.unary_unary(EXPORT)
        for _ in range(REQUESTS):
            export(_request(rng, sent, tokens), timeout=30)

    writers: dict[tuple[tuple[str, str], ...], list[str]] = defaultdict(list)
    counted: Counter[tuple[str, str]] = Counter()
    summed: Counter[tuple[str, str]] = Counter()
    owned: dict[str, set[str]] = defaultdict(set)
    for name, service in services.items():
        page = service.component(Kind.EXPORTER, "prometheus").render()
        for labels, value in _series(page, "otel_llm_requests_total").items():
            writers[labels].append(name)
            label = dict(labels)
            counted[(label["service_name"], label["gen_ai_request_model"])] += int(value)
            owned[name].add(label["service_name"])
        for labels, value in _series(
            page, "gen_ai_client_token_usage_sum", gen_ai_token_type="input"
        ).items():
            label = dict(labels)
            summed[(label["service_name"], label["gen_ai_request_model"])] += int(value)

    shared = {labels: names for labels, names in writers.items() if len(names) > 1}
    assert counted == sent  # totals add up either way (the instance id keeps series apart)
    assert summed == tokens
    if not front.by_service:
        # The control: spreading a service over instances does give its series several writers.
        assert len(shared) > len(writers) // 2
        return
    assert shared == {}, "series with two writers"
    assert all(owned[name] for name in services), f"an instance got no service: {dict(owned)}"
    for name, names in owned.items():
        assert all(front.ring.owner(service) == name for service in names)
    print(
        f"\nscale-out: {sum(sent.values())} spans, {len(sent)} series, services per instance "
        f"{ {name: len(names) for name, names in sorted(owned.items())} }"
    )
