"""One collector worker for the benchmark: a real :class:`collector.service.Service` from a config file.

Registers the benchmark-only ``bench_genai`` processor next to the built-in factories, starts the
service with ``SO_REUSEPORT`` (so several workers share the port, as ``service::workers`` does), prints
``READY <grpc port>`` and, on SIGTERM, shuts down and prints one JSON line with its counters and peak
memory. It is what ``python -m collector.runner`` does, plus the readiness line and the stats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import threading
from pathlib import Path
from types import FrameType


def main() -> int:
    sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[2])]
    from bench_processor import FACTORY as BENCH_FACTORY

    from collector.component import Kind, factories
    from collector.configuration import load_config
    from collector.logs import configure_logging
    from collector.service import Service

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--worker-index", type=int, default=0)
    args = parser.parse_args()
    factories()[Kind.PROCESSOR][BENCH_FACTORY.type_name] = BENCH_FACTORY
    config = load_config(args.config)
    configure_logging("warning", "json")
    service = Service(config, instance_id=f"bench-w{args.worker_index}")
    service.host.shared["collector.runner.reuse_port"] = True
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    receiver = service.component(Kind.RECEIVER, "otlp")
    print(f"READY {receiver.grpc_port} {os.getpid()}", flush=True)
    stop.wait()
    service.shutdown(5.0)
    registry = service.telemetry.registry
    labels = {"receiver": "otlp", "transport": "grpc"}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = {
        "pid": os.getpid(),
        "accepted_spans": registry.get_sample_value("otelcol_receiver_accepted_spans_total", labels) or 0,
        "refused_spans": registry.get_sample_value("otelcol_receiver_refused_spans_total", labels) or 0,
        "failed_spans": registry.get_sample_value("otelcol_receiver_failed_spans_total", labels) or 0,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
