"""Soak: steady GenAI load with many services and models and ever-new span names.

Checks, after a warm-up that lets every bounded structure (merge cache, metric series, gRPC pools)
reach its size: resident memory and open file descriptors stay flat, every derived metric keeps to
its cardinality limit (the overflow series takes the rest), and every span sent is accepted.

Default: ~25 s (8 s warm-up). ``OTEL_LLM_SLOW_TESTS=1``: 3 minutes (30 s warm-up).
"""

from __future__ import annotations

import os
import random
import threading
import time

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector.component import Kind
from collector.configuration import parse_config
from collector.metrics import shared_store
from collector.service import Service

SLOW = os.environ.get("OTEL_LLM_SLOW_TESTS") == "1"
WARM_UP_S, STEADY_S = (30.0, 150.0) if SLOW else (8.0, 15.0)
SERVICES, MODELS, LIMIT = 60, 30, 400
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

# The merge and agent-call maps of genai_metrics are bounded by size (100,000 calls by default) and by
# `merge_window` (10 min); a 3 s window lets them reach their steady size within the warm-up, so that
# growth after it means a leak rather than a cache still filling.
CONFIG = f"""
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}
processors:
  pii: {{}}
  genai_metrics: {{cardinality_limit: {LIMIT}, merge_cache_size: 5000, merge_window: 3s}}
exporters:
  debug: {{}}
  prometheus: {{endpoint: "127.0.0.1:0"}}
service:
  telemetry: {{metrics: {{enabled: false}}, logs: {{level: error}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [pii, genai_metrics], exporters: [debug, prometheus]}}
"""


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Load:
    """One sender thread: 40 spans per request, as fast as the service takes them (~a core's worth)."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.export = self.channel.unary_unary(TRACES)
        self.sent = 0
        self.errors: list[str] = []
        self.names = 0
        self.stop = threading.Event()
        self.rng = random.Random(5)
        self.thread = threading.Thread(target=self._run, name="soak-load", daemon=True)

    def request(self) -> ExportTraceServiceRequest:
        rng = self.rng
        request = ExportTraceServiceRequest()
        for _ in range(4):
            rs = request.resource_spans.add()
            attribute = rs.resource.attributes.add()
            attribute.key, attribute.value.string_value = "service.name", f"svc-{rng.randrange(SERVICES)}"
            ss = rs.scope_spans.add()
            ss.scope.name = "otel_llm"
            for _ in range(10):
                self.names += 1
                span = ss.spans.add()
                span.trace_id = rng.randbytes(16)
                span.span_id = rng.randbytes(8)
                span.name = f"chat step-{self.names}"  # ever-new names must not grow anything
                span.kind = Span.SPAN_KIND_CLIENT
                span.start_time_unix_nano = time.time_ns()
                span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(10**8, 3 * 10**9)
                model = f"model-{rng.randrange(MODELS)}"
                for key, value in (
                    ("gen_ai.operation.name", "chat"),
                    ("gen_ai.provider.name", rng.choice(["openai", "anthropic", "aws.bedrock"])),
                    ("gen_ai.request.model", model),
                    ("gen_ai.response.model", model),
                    (
                        "gen_ai.input.messages",
                        '[{"role":"user","parts":[{"type":"text","content":"hi, I am a@b.io"}]}]',
                    ),
                ):
                    attribute = span.attributes.add()
                    attribute.key, attribute.value.string_value = key, value
                for key, number in (
                    ("gen_ai.usage.input_tokens", rng.randrange(1, 4000)),
                    ("gen_ai.usage.output_tokens", rng.randrange(1, 800)),
                ):
                    attribute = span.attributes.add()
                    attribute.key, attribute.value.int_value = key, number
        return request

    def _run(self) -> None:
        while not self.stop.is_set():
            request = self.request()
            try:
                self.export(request.SerializeToString(), timeout=30)
                self.sent += 40
            except grpc.RpcError as exc:
                self.errors.append(str(exc.code()))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.channel.close()


@pytest.mark.timeout(WARM_UP_S + STEADY_S + 60)
def test_steady_load_keeps_memory_fds_and_cardinality_flat() -> None:
    service = Service(parse_config(CONFIG, "<soak>"))
    service.start()
    receiver = service.component(Kind.RECEIVER, "otlp")
    prometheus = service.component(Kind.EXPORTER, "prometheus")
    load = Load(receiver.grpc_port)
    try:
        load.thread.start()
        time.sleep(WARM_UP_S)
        prometheus.render()
        rss_warm, fds_warm = _rss(), _fds()
        samples: list[int] = []
        deadline = time.monotonic() + STEADY_S
        while time.monotonic() < deadline:
            time.sleep(min(5.0, STEADY_S / 5))
            page = prometheus.render()  # a scrape, as Prometheus would
            samples.append(_rss())
        rss_end, fds_end = _rss(), _fds()
    finally:
        load.close()
    store = shared_store(service.host)
    instruments = store.instruments()
    accepted = service.telemetry.registry.get_sample_value(
        "otelcol_receiver_accepted_spans_total", {"receiver": "otlp", "transport": "grpc"}
    )
    overflow = sum(
        point.value
        for snap in store.snapshot()
        if snap.name == "otel_llm.metric.overflow"
        for point in snap.points
    )
    service.shutdown(5.0)

    grown_mib = (rss_end - rss_warm) / (1 << 20)
    print(
        f"\nsoak: {load.sent} spans, {load.names} span names, rss warm {rss_warm >> 20} MiB end {rss_end >> 20} MiB "
        f"(+{grown_mib:.1f}), fds {fds_warm}->{fds_end}, series {store.series_count()}, overflow points {overflow:.0f}, "
        f"page {len(page) >> 10} KiB"
    )
    assert load.errors == []
    assert load.sent > 2000
    assert accepted == load.sent
    assert grown_mib < (24 if SLOW else 16), (
        f"RSS grew {grown_mib:.1f} MiB after warm-up: {[s >> 20 for s in samples]}"
    )
    assert fds_end - fds_warm <= 5
    assert instruments, "genai_metrics wrote nothing"
    assert all(len(instrument) <= LIMIT + 1 for instrument in instruments), {
        i.name: len(i) for i in instruments if len(i) > LIMIT + 1
    }
    assert overflow > 0, "60 services x 30 models x 3 providers should overflow a limit of 400"
    assert "step-" not in page  # span names are not a dimension
