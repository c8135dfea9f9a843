"""``kill -9`` of a collector with a persistent sending queue: everything acknowledged is delivered after restart."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest

from tests.collector.conftest import (
    TRACES_METHOD,
    FakeBackend,
    collector_subprocess,
    free_port,
    grpc_channel,
    trace_request,
    wait_for,
)

CONFIG = """
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{backend}"
    tls: {{insecure: true}}
    retry_on_failure: {{initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 0s}}
    sending_queue: {{num_consumers: 2, queue_size: 1000, storage: "{storage}"}}
service:
  telemetry: {{metrics: {{enabled: false}}, logs: {{level: warning}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
"""
REQUESTS = 30


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(config: Path) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"collector-{len(processes)}.log", "wb")  # noqa: SIM115
        logs.append(log)
        process = collector_subprocess(config, log)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)
    for log in logs:
        log.close()


def _send(port: int, marker: str) -> bool:
    try:
        with grpc_channel(port) as channel:
            channel.unary_unary(TRACES_METHOD)(trace_request(4, marker=marker).SerializeToString(), timeout=2)
        return True
    except grpc.RpcError:
        return False


def _rows(storage: Path) -> int:
    files = list(storage.glob("*.sqlite"))
    assert files, "no queue file was written"
    with sqlite3.connect(files[0]) as db:
        rows: int = db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
    return rows


@pytest.mark.external
def test_kill_9_then_restart_delivers_everything_acknowledged(
    tmp_path: Path,
    backend_factory: Callable[..., FakeBackend],
    collector_process: Callable[[Path], subprocess.Popen[bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = backend_factory("grpc", delay_s=0.1).start()  # slow, so some requests wait in the queue
    port = free_port()
    storage = tmp_path / "queue"
    config = tmp_path / "collector.yaml"
    config.write_text(CONFIG.format(port=port, backend=backend.port, storage=storage))

    first = collector_process(config)
    assert wait_for(lambda: _send(port, "warmup"), timeout_s=30, interval_s=0.2), "collector did not start"
    acknowledged = []
    for index in range(REQUESTS):
        assert _send(port, f"m{index}")
        acknowledged.append(f"m{index}")
    # Kill it mid-way: some requests delivered, the rest queued or being sent.
    assert wait_for(lambda: len(set(backend.markers())) >= 6, timeout_s=10)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    delivered_before = set(backend.markers())
    in_flight = _rows(storage)  # queued or being sent when the process died
    with capsys.disabled():
        print(
            f"\nkill -9: {len(acknowledged)} requests acknowledged, {len(delivered_before & set(acknowledged))} "
            f"delivered before the kill, {in_flight} still in the queue file"
        )
    assert in_flight > 0, "the kill came too late to test anything; slow the backend down"

    second = collector_process(config)
    assert wait_for(lambda: set(acknowledged) <= set(backend.markers()), timeout_s=30, interval_s=0.1)
    assert wait_for(lambda: _rows(storage) == 0, timeout_s=10)
    markers = backend.markers()
    per_request = 4  # spans per request, each carrying the request's marker
    duplicates = sum(markers.count(m) // per_request - 1 for m in set(markers))
    with capsys.disabled():
        print(
            f"after restart: all {len(acknowledged)} delivered, {duplicates} requests delivered twice (at-least-once)"
        )
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0
