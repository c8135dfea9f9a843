"""Runs the collector in the foreground: one process, or ``workers`` processes sharing the ports.

With ``service::workers: N`` (N > 1) this process becomes a supervisor: it starts N worker processes
(``python -m collector.runner``), each a full collector whose receivers bind with ``SO_REUSEPORT`` so
the kernel spreads connections over them, and forwards SIGTERM/SIGINT to them. Each worker has its own
instance id (``<id>-w<i>``), exported on every derived metric as ``otel_llm.instance.id``, so series
from different workers never collide and sum correctly in PromQL (``sum without (otel_llm_instance_id)``).

The id is stable across restarts: ``service::instance_id``, by default the hostname (no process id),
so a restarted collector continues its series instead of starting new ones (series churn).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import socket
import subprocess
import sys
import threading
from types import FrameType

from collector.configuration import CollectorConfig, load_config
from collector.errors import ComponentError, ConfigError
from collector.logs import configure_logging, event, get_logger

__all__ = ["instance_id", "run_collector"]


def _load(path: str) -> CollectorConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def run_collector(path: str, workers: int | None = None, worker_index: int | None = None) -> int:
    """Load ``path`` and run until SIGTERM/SIGINT; return the process exit code."""
    config = _load(path)
    if config is None:
        return 2
    logs = config.service.telemetry.logs
    configure_logging(logs.level, logs.format)
    count = workers if workers is not None else config.service.workers
    if count > 1 and worker_index is None:
        return _supervise(path, count)
    return _run_one(config, worker_index)


def instance_id(configured: str | None, worker_index: int | None) -> str:
    """``service::instance_id`` or the hostname, plus ``-w<index>`` for a worker; no pid, so it is stable."""
    base = configured or socket.gethostname()
    return base if worker_index is None else f"{base}-w{worker_index}"


def _worker_config(config: CollectorConfig, worker_index: int) -> CollectorConfig:
    """The config of worker ``worker_index``: its self-telemetry endpoint on port + index (port 0 stays
    0), because every worker has its own registry and two processes cannot listen on one such port."""
    metrics = config.service.telemetry.metrics
    host, _, port = metrics.endpoint.rpartition(":")
    if not metrics.enabled or not port.isdigit() or int(port) == 0:
        return config
    metrics = metrics.model_copy(update={"endpoint": f"{host}:{int(port) + worker_index}"})
    telemetry = config.service.telemetry.model_copy(update={"metrics": metrics})
    return dataclasses.replace(config, service=config.service.model_copy(update={"telemetry": telemetry}))


def _run_one(config: CollectorConfig, worker_index: int | None) -> int:
    from collector.service import Service

    if worker_index is not None:
        config = _worker_config(config, worker_index)

    service = Service(config, instance_id=instance_id(config.service.instance_id, worker_index))
    # Workers share the listening ports; the receivers read this before binding.
    service.host.shared["collector.runner.reuse_port"] = worker_index is not None
    if worker_index is not None:
        # Endpoints that cannot be shared (the prometheus exporter's) add this to their port.
        service.host.shared["collector.runner.worker_index"] = worker_index
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        service.start()
    except ComponentError as exc:
        print(f"otel-llm: error: {exc}", file=sys.stderr)
        return 1
    while not stop.wait(0.5):
        pass
    service.shutdown()
    return 0


def _supervise(path: str, count: int) -> int:
    logger = get_logger("supervisor")
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "collector.runner", "--config", path, "--worker-index", str(i)]
        )
        for i in range(count)
    ]
    event(logger, 20, "workers started", workers=count, pids=",".join(str(c.pid) for c in children))

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes) if codes else 0


def _main() -> int:
    parser = argparse.ArgumentParser(prog="python -m collector.runner")
    parser.add_argument("--config", required=True)
    parser.add_argument("--worker-index", type=int, required=True)
    args = parser.parse_args()
    return run_collector(args.config, worker_index=args.worker_index)


if __name__ == "__main__":
    raise SystemExit(_main())
