"""Backpressure end to end: the memory limiter and the sending queue under overload.

(The memory limiter's tests live here rather than under ``tests/collector/processors/``, which another
suite owns.)
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from collector.component import Kind, Signal
from collector.processors import memory_limiter
from collector.processors.memory_limiter import MemoryLimiterConfig, memory_limit_bytes, rss_bytes
from collector.service import Service
from tests.collector.conftest import (
    TRACES_METHOD,
    FakeBackend,
    grpc_channel,
    receiver_ports,
    sample,
    trace_request,
    wait_for,
)

MIB = 1024 * 1024

LIMITED = """
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}
    max_inflight_mib: {inflight}
processors:
  memory_limiter: {{check_interval: 20ms, limit_mib: {limit}, spike_limit_mib: {spike}}}
exporters:
  {exporter}
service:
  telemetry: {{metrics: {{enabled: false}}, logs: {{level: error}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter], exporters: [{exporter_id}]}}
"""


def test_limits_from_mib_and_percentage() -> None:
    assert MemoryLimiterConfig(limit_mib=1000).limits() == (800 * MIB, 1000 * MIB)
    assert MemoryLimiterConfig(limit_mib=1000, spike_limit_mib=100).limits() == (900 * MIB, 1000 * MIB)
    config = MemoryLimiterConfig(limit_percentage=50, spike_limit_percentage=10)
    assert config.limits(total=1000 * MIB) == (400 * MIB, 500 * MIB)
    assert MemoryLimiterConfig().problems() == [
        ("limit_mib", "one of limit_mib or limit_percentage is required")
    ]
    assert MemoryLimiterConfig(limit_mib=10, limit_percentage=5).problems()
    assert MemoryLimiterConfig(limit_mib=10, spike_limit_mib=10).problems()


def test_cgroup_limit_is_read_else_physical_memory(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert memory_limit_bytes(tmp_path) == 1024 * MIB
    (tmp_path / "memory.max").write_text("max\n")
    physical = memory_limit_bytes(tmp_path)
    assert physical > 0 and physical != 1024 * MIB
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(512 * MIB))
    assert memory_limit_bytes(v1) == 512 * MIB
    assert rss_bytes() > 0


def test_memory_limiter_refuses_above_soft_and_recovers(
    run_service: Callable[[str], Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    rss = [100 * MIB]
    collections = Counter[str]()
    monkeypatch.setattr(memory_limiter, "rss_bytes", lambda: rss[0])
    monkeypatch.setattr(memory_limiter.gc, "collect", lambda: collections.update(["gc"]) or 0)
    service = run_service(
        LIMITED.format(inflight=256, limit=1000, spike=200, exporter="debug: {}", exporter_id="debug")
    )
    port, _ = receiver_ports(service)
    payload = trace_request(5).SerializeToString()
    holder = service.status_holder
    with grpc_channel(port) as channel:
        export = channel.unary_unary(TRACES_METHOD)
        export(payload, timeout=5)
        rss[0] = 850 * MIB  # above soft (800), below hard (1000)
        assert wait_for(lambda: holder.refusing)
        with pytest.raises(grpc.RpcError) as info:
            export(payload, timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert dict(info.value.trailing_metadata())["google.rpc.retryinfo-bin"]  # type: ignore[attr-defined]
        assert collections["gc"] == 0
        rss[0] = 1100 * MIB  # above hard: collects garbage
        assert wait_for(lambda: collections["gc"] > 0)
        rss[0] = 300 * MIB
        assert wait_for(lambda: not holder.refusing)
        export(payload, timeout=5)
    assert service.component(Kind.EXPORTER, "debug").items["traces"] == 10
    assert sample(service, "otelcol_receiver_refused_spans_total", receiver="otlp", transport="grpc") == 5


def test_overload_is_refused_with_retry_and_memory_stays_under_the_limit(
    run_service: Callable[[str], Service], backend_factory: Callable[..., FakeBackend]
) -> None:
    backend = backend_factory("grpc", delay_s=0.05).start()  # slow downstream: the queue fills up
    exporter = (
        f'otlp: {{endpoint: "127.0.0.1:{backend.port}", tls: {{insecure: true}}, '
        "sending_queue: {num_consumers: 2, queue_size: 500}}"
    )
    payload = trace_request(3000, attributes=8).SerializeToString()  # ~0.5 MiB per request
    # Warm up (imports, grpc threads, allocator arenas) so the limit sits a fixed distance above a
    # settled baseline.
    warm = run_service(
        LIMITED.format(inflight=16, limit=100_000, spike=0, exporter=exporter, exporter_id="otlp")
    )
    with grpc_channel(receiver_ports(warm)[0]) as channel:
        for _ in range(4):
            channel.unary_unary(TRACES_METHOD)(payload, timeout=10)
    warm.shutdown(1.0)
    baseline = rss_bytes() // MIB
    limit, spike = baseline + 100, 40
    service = run_service(
        LIMITED.format(inflight=16, limit=limit, spike=spike, exporter=exporter, exporter_id="otlp")
    )
    port, _ = receiver_ports(service)
    codes: Counter[str] = Counter()
    retry_info = Counter[bool]()
    peak = [rss_bytes()]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    def client() -> None:
        with grpc_channel(port) as channel:
            export = channel.unary_unary(TRACES_METHOD)
            while not stop.is_set():
                try:
                    export(payload, timeout=5)
                    codes["OK"] += 1
                except grpc.RpcError as error:
                    codes[error.code().name] += 1  # type: ignore[attr-defined]
                    trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
                    retry_info["google.rpc.retryinfo-bin" in trailers] += 1

    threads = [threading.Thread(target=watch)] + [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join(10)
    print(
        f"\noverload: {dict(codes)}; peak RSS {peak[0] // MIB} MiB, baseline {baseline} MiB, "
        f"soft {limit - spike} MiB, hard {limit} MiB"
    )
    assert codes["OK"] > 0
    assert codes["UNAVAILABLE"] > 0, "the collector never pushed back"
    assert set(codes) <= {"OK", "UNAVAILABLE"}
    assert retry_info == {True: codes["UNAVAILABLE"]}  # every refusal carries a retry delay
    assert peak[0] < limit * MIB
    refused = sample(service, "otelcol_receiver_refused_spans_total", receiver="otlp", transport="grpc")
    assert refused == 3000 * codes["UNAVAILABLE"]


# -- gRPC under 10x overload: refused at the intake, not queued inside grpc ----------------------------

SLOW_GRPC = """
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
    max_concurrent_requests: 4
exporters:
  debug: {}
service:
  telemetry: {metrics: {enabled: false}, logs: {level: error}}
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
"""


class _Slow:
    """A pipeline that takes ``delay_s`` per batch (a slow exporter, without a queue in front)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.consumed = 0
        self._lock = threading.Lock()

    def consume(self, batch: object) -> None:
        time.sleep(self.delay_s)
        with self._lock:
            self.consumed += 1


def test_grpc_overload_is_refused_with_retry_info_not_queued(
    run_service: Callable[[str], Service],
) -> None:
    """40 concurrent calls against 4 slots of a 0.5 s pipeline (10x): the extra calls are answered at
    once with UNAVAILABLE + RetryInfo (max_threads defaults to max_concurrent_requests + 8, so grpc has
    threads to run them and the intake refuses), and no call waits anywhere near its deadline."""
    from google.rpc import error_details_pb2, status_pb2

    service = run_service(SLOW_GRPC)
    slow = _Slow(0.5)
    service.component(Kind.RECEIVER, "otlp").bind({Signal.TRACES: slow})
    port, _ = receiver_ports(service)
    payload = trace_request(1).SerializeToString()
    outcomes: list[tuple[grpc.StatusCode, float, dict[str, bytes]]] = []
    lock = threading.Lock()
    with grpc_channel(port) as channel:
        export = channel.unary_unary(TRACES_METHOD)
        export(payload, timeout=10)  # connect first, so the burst measures the server, not the handshake
        start = threading.Barrier(40)

        def call() -> None:
            start.wait()
            began = time.monotonic()
            try:
                export(payload, timeout=10)
                code, trailers = grpc.StatusCode.OK, {}
            except grpc.RpcError as error:
                code = error.code()  # type: ignore[attr-defined]
                trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
            with lock:
                outcomes.append((code, time.monotonic() - began, trailers))

        threads = [threading.Thread(target=call) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    assert len(outcomes) == 40
    codes = Counter(code for code, _, _ in outcomes)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes[grpc.StatusCode.UNAVAILABLE] >= 20, codes
    assert 4 <= codes[grpc.StatusCode.OK] <= 20, codes
    # Nothing hangs: the slowest call is a few pipeline delays, far from the 10 s deadline.
    assert max(elapsed for _, elapsed, _ in outcomes) < 4.0
    for code, elapsed, trailers in outcomes:
        if code is grpc.StatusCode.UNAVAILABLE:
            status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
            retry = error_details_pb2.RetryInfo()
            assert status.code == 14 and status.details[0].Unpack(retry)
            assert retry.retry_delay.seconds == 1  # the receiver's retry_after default
            assert elapsed < 2.0  # refused at once, not after waiting for a slot
    assert slow.consumed == codes[grpc.StatusCode.OK] + 1  # the warm-up call included
