"""In-process: spans per CPU-second through decode + cost + genai_metrics (+ Prometheus store), beside the ceiling.

Both sides run in the same process, on the same pre-serialised requests (the ceiling's seeded
``genai_payload`` generator, 512-span batches), in alternating order, so machine noise hits both:

- ``ceiling``: ``walk.walk_keyed_direct`` (decode + the best straightforward walker) + the pure-Python
  aggregator of ``aggregate.py``: the ceiling's in-process "keyed_direct + py aggregate" figure;
- ``pipeline``: ``ExportTraceServiceRequest.ParseFromString`` → ``TraceBatch`` → ``cost.process`` →
  ``genai_metrics.process`` into the shared derived-metric store, with a Prometheus exposition of the
  store rendered every ``--render-every`` batches (a scrape; 0: never).

Usage (from the repository root; the ceiling scripts are imported from ``--ceiling``)::

    .venv/bin/python bench/receiver/pipeline_genai.py                 # table, mixed and genai-only
    .venv/bin/python bench/receiver/pipeline_genai.py --profile 3     # cProfile of the pipeline side
    .venv/bin/python bench/receiver/pipeline_genai.py --json out.json

Bounded: ``--seconds`` per repeat and side (default 1.0), ``--repeats`` (default 3).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import logging
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from collector.component import ComponentId, CreateSettings, Host, Kind  # noqa: E402
from collector.data import TraceBatch  # noqa: E402
from collector.metrics import render_text, shared_store  # noqa: E402
from collector.processors.cost import FACTORY as COST  # noqa: E402
from collector.processors.genai_metrics import FACTORY as GENAI_METRICS  # noqa: E402
from collector.telemetry import SelfTelemetry  # noqa: E402

DEFAULT_CEILING = ROOT.parent / "shared" / "bench" / "ceiling"


def _component(factory: Any, host: Host, **config: Any) -> Any:
    settings = CreateSettings(
        ComponentId(factory.type_name), Kind.PROCESSOR, logging.getLogger("bench"), host.telemetry
    )
    component = factory.create(factory.config_type.model_validate(config), settings)
    component.start(host)
    return component


def pipeline_case(render_every: int) -> tuple[Callable[[bytes], object], Host]:
    host = Host(telemetry=SelfTelemetry("bench"))
    host.shared["collector.service.instance_id"] = "bench"
    cost = _component(COST, host)
    metrics = _component(GENAI_METRICS, host)
    store = shared_store(host)
    calls = [0]

    def case(data: bytes) -> object:
        request = ExportTraceServiceRequest()
        request.ParseFromString(data)
        batch = TraceBatch(request)
        metrics.process(cost.process(batch))
        calls[0] += 1
        if render_every and calls[0] % render_every == 0:
            render_text(store, store.snapshot())
        return batch

    return case, host


def measure(
    case: Callable[[bytes], object], payloads: list[bytes], spans: list[int], seconds: float
) -> float:
    """Spans per CPU-second of this process over ``seconds`` of wall time."""
    count = i = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        case(payloads[i])
        count += spans[i]
        i = (i + 1) % len(payloads)
    return count / (time.process_time() - c0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ceiling", type=Path, default=DEFAULT_CEILING, help="the ceiling folder (walk.py, ...)"
    )
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--mix", nargs="+", default=["mixed", "genai-only"])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--render-every", type=int, default=100, help="render the scrape page every N batches"
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="cProfile the pipeline for N seconds, print top"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(args.ceiling))
    from aggregate import PyAggregator  # type: ignore[import-not-found]
    from genai_payload import build_payloads  # type: ignore[import-not-found]
    from walk import walk_keyed_direct  # type: ignore[import-not-found]

    results: list[dict[str, Any]] = []
    print(f"load {os.getloadavg()[0]:.2f}; batch {args.batch}; {args.seconds}s x {args.repeats} per side")
    print(
        f"{'mix':12s} {'ceiling spans/cpu-s':>20s} {'pipeline spans/cpu-s':>21s} {'ratio':>7s} {'us/span':>8s}"
    )
    for mix in args.mix:
        payloads: list[bytes] = []
        spans: list[int] = []
        for seed in range(max(4, 40_000 // args.batch)):
            [payload], stats = build_payloads(args.batch, 1, seed=seed, mix=mix)
            payloads.append(payload)
            spans.append(stats.spans)
        aggregator = PyAggregator()

        def ceiling(data: bytes, aggregator: Any = aggregator) -> object:
            request = ExportTraceServiceRequest()
            request.ParseFromString(data)
            aggregator.add(walk_keyed_direct(request))
            return None

        pipeline, host = pipeline_case(args.render_every)
        for data in payloads[:3]:  # warm up: price cache, series creation
            ceiling(data)
            pipeline(data)
        if args.profile:
            profiler = cProfile.Profile(time.process_time)  # CPU time: wall time is noise on a shared machine
            profiler.enable()
            measure(pipeline, payloads, spans, args.profile)
            profiler.disable()
            print(f"\n## cProfile, pipeline, {mix}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
        ceiling_rates, pipeline_rates = [], []
        for _ in range(args.repeats):
            gc.collect()
            ceiling_rates.append(measure(ceiling, payloads, spans, args.seconds))
            gc.collect()
            pipeline_rates.append(measure(pipeline, payloads, spans, args.seconds))
        c, p = statistics.median(ceiling_rates), statistics.median(pipeline_rates)
        store = shared_store(host)
        row = {
            "mix": mix,
            "batch": args.batch,
            "ceiling_keyed_direct_py_aggregate": c,
            "pipeline_cost_genai_metrics_store": p,
            "ratio": p / c,
            "series": store.series_count(),
        }
        results.append(row)
        print(f"{mix:12s} {c:>20,.0f} {p:>21,.0f} {p / c:>7.1%} {1e6 / p:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"load": os.getloadavg()[0], "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
