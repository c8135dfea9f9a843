"""Receiver throughput benchmark: the collector's OTLP/gRPC receiver + GenAI pipeline beside the ceiling.

One command (from the repository root)::

    .venv/bin/python bench/receiver/run.py                 # ~3 minutes on 2 cores
    .venv/bin/python bench/receiver/run.py --profile       # also cProfile the in-process hot path

It runs, in the same sitting on the same machine:

1. the ceiling harness (``../shared/bench/ceiling/run_e2e.py``): ``full keyed_direct`` at batch 512,
   one process (and its genai-only variant), and two processes sharing the port;
2. the collector (``bench/receiver/_worker.py``: a real ``Service`` from a YAML config, otlp receiver
   -> ``--processors`` -> debug exporter) with 1 and 2 workers (``SO_REUSEPORT``), driven by the
   ceiling's own ``load_client.py`` (pre-serialised batches of 512 spans, ~28 % GenAI spans, 8 calls in
   flight), which reads the server processes' CPU from /proc;
3. the collector under 10x overload (80 calls in flight over 8 connections, memory_limiter first):
   peak RSS and the share of requests refused.

and prints a table with spans per CPU-second of the collector process(es) and the ratios. The
payload generator is imported from the ceiling folder (``genai_payload.py``), not copied.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CEILING = Path(os.environ.get("OTEL_LLM_CEILING_DIR", ROOT.parent / "shared" / "bench" / "ceiling"))
PY = sys.executable

CONFIG = """
receivers:
  otlp:
    protocols: {{grpc: {{endpoint: "127.0.0.1:{port}", max_threads: {threads}}}}}
processors:
  memory_limiter: {{check_interval: 100ms, limit_mib: {limit_mib}}}
  genai_metrics: {{}}
  bench_genai: {{}}
exporters:
  debug: {{}}
service:
  telemetry: {{metrics: {{enabled: false}}, logs: {{level: warning}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [{processors}], exporters: [debug]}}
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_ceiling(only: str, seconds: float) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = Path(out.name)
    try:
        cmd = [
            PY,
            str(CEILING / "run_e2e.py"),
            "--only",
            only,
            "--seconds",
            str(seconds),
            "--json",
            str(path),
        ]
        subprocess.run(cmd, cwd=CEILING, check=True, capture_output=True, text=True, timeout=600)
        results: list[dict[str, Any]] = json.loads(path.read_text())
        return results
    finally:
        path.unlink(missing_ok=True)


def run_collector(
    workers: int,
    processors: str,
    seconds: float,
    client_args: list[str],
    threads: int,
    limit_mib: int = 2048,
    mix: str = "mixed",
) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "collector.yaml"
        config.write_text(
            CONFIG.format(port=port, processors=processors, threads=threads, limit_mib=limit_mib)
        )
        procs = []
        try:
            for index in range(workers):
                proc = subprocess.Popen(
                    [PY, str(HERE / "_worker.py"), "--config", str(config), "--worker-index", str(index)],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
                procs.append(proc)
                assert proc.stdout is not None
                line = proc.stdout.readline().split()
                if not line or line[0] != "READY":
                    raise RuntimeError(f"collector worker did not start: {line}")
            pids = [str(p.pid) for p in procs]
            cmd = [
                PY,
                str(CEILING / "load_client.py"),
                "--target",
                f"127.0.0.1:{port}",
                "--seconds",
                str(seconds),
                "--mix",
                mix,
                *client_args,
                "--server-pids",
                *pids,
            ]
            res = subprocess.run(cmd, cwd=CEILING, capture_output=True, text=True, timeout=seconds + 120)
            if res.returncode != 0:
                raise RuntimeError(f"load client failed: {res.stderr[-2000:]}")
            client = json.loads(res.stdout.strip().splitlines()[-1])
        finally:
            time.sleep(0.2)
            stats = []
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    out, _ = proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    out, _ = proc.communicate()
                lines = [ln for ln in out.splitlines() if ln.startswith("{")]
                if lines:
                    stats.append(json.loads(lines[-1]))
    return {"client": client, "workers": stats}


def profile(processors: str, rounds: int) -> str:
    """cProfile of the in-process hot path: decode, checks, processors, exporter, for 16 requests."""
    sys.path[:0] = [str(CEILING), str(HERE), str(ROOT)]
    import genai_payload
    from bench_processor import FACTORY as BENCH_FACTORY

    from collector.component import Kind, Signal, factories
    from collector.configuration import parse_config
    from collector.service import Service

    factories()[Kind.PROCESSOR][BENCH_FACTORY.type_name] = BENCH_FACTORY
    text = CONFIG.format(port=0, processors=processors, threads=4, limit_mib=100_000)
    service = Service(parse_config(text))
    service.start()
    try:
        intake = service.component(Kind.RECEIVER, "otlp")._intake
        payloads, stats = genai_payload.build_payloads(512, 16)
        for payload in payloads:
            intake.handle("grpc", Signal.TRACES, payload)
        started = time.process_time()
        for _ in range(rounds):
            for payload in payloads:
                intake.handle("grpc", Signal.TRACES, payload)
        rate = rounds * stats.spans / (time.process_time() - started)
        profiler = cProfile.Profile()
        profiler.enable()
        for payload in payloads:
            intake.handle("grpc", Signal.TRACES, payload)
        profiler.disable()
    finally:
        service.shutdown(2.0)
    out = StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
    return f"in process, no gRPC ({processors}): {rate:,.0f} spans per CPU-second\n" + out.getvalue()


def row(name: str, client: dict[str, Any], extra: str = "") -> str:
    per_cpu = client.get("spans_per_server_cpu_s") or 0
    return (
        f"| {name} | {client['spans_per_s']:,.0f} | {client['server_cores']:.2f} | {client['other_cores']:.2f} | "
        f"{per_cpu:,.0f} | {client['latency_p50_ms']:.1f} / {client['latency_p99_ms']:.1f} | "
        f"{client['errors']} | {extra} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window per scenario")
    parser.add_argument(
        "--processors",
        default="genai_metrics",
        help="comma-separated processors of the benchmarked pipeline (bench_genai: the benchmark-only one)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="gRPC server threads per worker (0: the receiver default)"
    )
    parser.add_argument("--skip-ceiling", action="store_true", help="only the collector rows")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the hot path")
    parser.add_argument("--profile-only", action="store_true", help="only the in-process profile")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median round is shown")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    processors = ", ".join(p.strip() for p in args.processors.split(",") if p.strip())
    if args.profile_only:
        print(profile(processors, rounds=3))
        return

    print(
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; collector pipeline: otlp -> [{processors}] -> debug"
    )
    # Rounds interleave the ceiling and the collector, so both see the same machine; each scenario's
    # median round (by spans per server CPU-second) is shown.
    runs: dict[str, list[dict[str, Any]]] = {}

    def keep(key: str, result: dict[str, Any]) -> None:
        runs.setdefault(key, []).append(result)

    for round_index in range(args.repeats):
        print(f"round {round_index + 1}/{args.repeats}, load {os.getloadavg()[0]:.2f}", flush=True)
        if not args.skip_ceiling:
            for result in run_ceiling("full keyed_direct, sync, batch 512", args.seconds):
                keep("ceiling_genai_only" if "genai-only" in result["scenario"] else "ceiling_1", result)
        keep("collector_1", run_collector(1, processors, args.seconds, [], args.threads))
        keep(
            "collector_genai_only",
            run_collector(1, processors, args.seconds, [], args.threads, mix="genai-only"),
        )
        if not args.skip_ceiling:
            keep("ceiling_2", run_ceiling("full keyed_direct, sync, 2 procs reuseport", args.seconds)[0])
        keep("collector_2", run_collector(2, processors, args.seconds, ["--channels", "8"], args.threads))
        if not args.skip_ceiling and round_index == 0:
            keep("ceiling_aio", run_ceiling("full keyed_direct, aio, batch 512", args.seconds)[0])
    results: dict[str, Any] = {}
    for key, found in runs.items():
        found.sort(key=lambda r: r["client"].get("spans_per_server_cpu_s") or 0.0)
        results[key] = found[len(found) // 2]
        results[key]["all_rounds_spans_per_server_cpu_s"] = [
            round(r["client"].get("spans_per_server_cpu_s") or 0.0) for r in found
        ]
    overload_args = ["--concurrency", "80", "--channels", "8"]
    results["overload"] = run_collector(
        1, f"memory_limiter, {processors}", args.seconds, overload_args, args.threads, limit_mib=512
    )

    print()
    print(
        "| scenario | spans/s | server cores | other cores | spans per server CPU-s | p50 / p99 ms | errors | notes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")

    def worker_notes(result: dict[str, Any]) -> str:
        workers = result["workers"]
        rss = "/".join(f"{w['peak_rss_mib']:.0f}" for w in workers)
        split = "/".join(f"{w['accepted_spans']:,.0f}" for w in workers)
        return f"peak RSS {rss} MiB; accepted spans per worker {split}"

    for key, label in [
        ("ceiling_1", "ceiling: full keyed_direct, 1 process"),
        ("ceiling_aio", "ceiling: full keyed_direct, 1 process, grpc.aio server"),
        ("collector_1", "otel-llm collector, 1 worker"),
        ("ceiling_genai_only", "ceiling: full keyed_direct, genai-only"),
        ("collector_genai_only", "otel-llm collector, 1 worker, genai-only"),
        ("ceiling_2", "ceiling: full keyed_direct, 2 processes"),
        ("collector_2", "otel-llm collector, 2 workers"),
        ("overload", "otel-llm collector, 1 worker, 10x overload (80 in flight)"),
    ]:
        if key not in results:
            continue
        result = results[key]
        notes = worker_notes(result) if "workers" in result else ""
        if len(result.get("all_rounds_spans_per_server_cpu_s", [])) > 1:
            rounds = ", ".join(f"{v:,}" for v in result["all_rounds_spans_per_server_cpu_s"])
            notes = f"rounds per CPU-s: {rounds}" + (f"; {notes}" if notes else "")
        if key == "overload":
            client = result["client"]
            total = client["total_requests"]
            notes += f"; {client['errors']} of {total} requests refused ({100 * client['errors'] / max(total, 1):.0f} %)"
        print(row(label, result["client"], notes))

    def per_cpu(key: str) -> float:
        value = results[key]["client"].get("spans_per_server_cpu_s") or 0.0
        return float(value)

    print()
    if "ceiling_1" in results:
        print(
            f"1 worker / ceiling 1 process, spans per CPU-s: {per_cpu('collector_1') / per_cpu('ceiling_1'):.2f}"
        )
        print(
            "genai-only, 1 worker / ceiling, spans per CPU-s: "
            f"{per_cpu('collector_genai_only') / per_cpu('ceiling_genai_only'):.2f}"
        )
        print(
            f"2 workers / ceiling 2 processes, spans per CPU-s: {per_cpu('collector_2') / per_cpu('ceiling_2'):.2f}"
        )
    one = results["collector_1"]["client"]["spans_per_s"]
    two = results["collector_2"]["client"]["spans_per_s"]
    print(
        f"2 workers / 1 worker, spans/s: {two / one:.2f} (per CPU-s: {per_cpu('collector_2') / per_cpu('collector_1'):.2f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.profile:
        print()
        print(profile(processors, rounds=3))


if __name__ == "__main__":
    main()
