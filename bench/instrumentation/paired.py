"""Per-call overhead of otel-llm and its peers, paired in one process: tighter ratios on a busy machine.

The fresh-process method of the shared harness (`run.py`) compares runs made seconds apart; on the
project's shared 2-core machine the uninstrumented baseline itself moves by 2x between runs, which
swamps differences of a few hundred microseconds. Here every configuration lives in the same process
and takes turns: in each round, every configuration (in a shuffled order) is instrumented, runs one
block of calls, and is uninstrumented again, and an uninstrumented block runs right before and after
it. A configuration's overhead in a round is its block's CPU time per call minus the mean of its two
neighbouring baseline blocks; the table shows the median over rounds, with the quartiles.

Same SDK providers (counting exporters), same server, same calls as the shared harness
(`shared/bench/instrumentation_overhead/`, imported by path). Configurations:

- `otel-llm`: this repository, default settings (content off).
- `genai-openai`: the best peer in every run so far, default settings, as in the harness. OpenLLMetry
  (`traceloop`) cannot take part: its `uninstrument()` leaves its `Completions.create` wrapper in
  place (a second `instrument()` then makes two spans per call; found by the checks below), so it
  cannot be switched off inside a process. `run.py` measures it with the fresh-process method.
- `sdk-floor`: not an instrumentation: a hook on the same `send` that only makes the OpenTelemetry
  SDK calls otel-llm makes for that call (one CLIENT span with the same attributes, made current
  around the request, and the same three histogram records), with constant values and nothing
  parsed. Its overhead is what any instrumentation emitting that span and those metrics through the
  SDK pays at least; `sdk-floor / best peer` says how low `otel-llm / best peer` can go. (For
  streams it is lower still than what a stream needs: it does not record time to first chunk.)
- `otel-llm-noop` (not in the default set): otel-llm with a no-op tracer and meter, i.e. its own code
  alone (hook, recognition, JSON decoding, bookkeeping) in the real call loop.
- `otel-llm-spans-only` (not in the default set): otel-llm with `OTEL_LLM_CLIENT_METRICS=false`, the
  mode in which the collector derives the client metrics from the spans.

Each baseline block is checked to have produced no span (an uninstrument that left a hook behind
would make every overhead look smaller).

    /tmp/bench-venv/bin/python bench/instrumentation/paired.py --rounds 15   # PYTHONPATH=. bench/instrumentation

`run.py --paired` runs it with the benchmark venv and the right paths. Prints a table and one JSON
line (`--json`).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from _paths import HARNESS

sys.path.insert(0, str(HARNESS))
import bench_client as shared

CONFIGS = ("otel-llm", "genai-openai", "sdk-floor", "otel-llm-noop", "otel-llm-spans-only")


class Toggle:
    """One configuration that can be switched on and off any number of times in one process."""

    def __init__(self, on: Callable[[], None], off: Callable[[], None]) -> None:
        self.on = on
        self.off = off


def _otel_llm() -> Toggle:
    from otel_llm import LLMInstrumentor

    inst = LLMInstrumentor()
    return Toggle(inst.instrument, inst.uninstrument)


def _otel_llm_noop() -> Toggle:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from otel_llm import LLMInstrumentor

    inst = LLMInstrumentor()
    return Toggle(
        lambda: inst.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()),
        inst.uninstrument,
    )


def _otel_llm_spans_only() -> Toggle:
    import os

    from otel_llm import LLMInstrumentor

    inst = LLMInstrumentor()

    def on() -> None:
        os.environ["OTEL_LLM_CLIENT_METRICS"] = "false"  # read once, by instrument()
        try:
            inst.instrument()
        finally:
            del os.environ["OTEL_LLM_CLIENT_METRICS"]

    return Toggle(on, inst.uninstrument)


def _genai_openai() -> Toggle:
    from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

    inst = OpenAIInstrumentor()
    return Toggle(inst.instrument, inst.uninstrument)


def _sdk_floor(span_attributes: dict[str, Any], metric_attributes: dict[str, Any]) -> Toggle:
    """The SDK calls otel-llm makes for one plain call, hooked on the same method, nothing parsed."""
    import httpx2
    import wrapt
    from opentelemetry import context, metrics, trace
    from opentelemetry.instrumentation.utils import unwrap

    from otel_llm._instruments import Instruments

    tracer = trace.get_tracer("sdk-floor")
    instruments = Instruments(metrics.get_meter("sdk-floor"))
    name = f"chat {span_attributes.get('gen_ai.request.model')}"
    input_attrs = {**metric_attributes, "gen_ai.token.type": "input"}
    output_attrs = {**metric_attributes, "gen_ai.token.type": "output"}

    def send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        start = time.perf_counter()
        span = tracer.start_span(name, kind=trace.SpanKind.CLIENT, attributes=span_attributes)
        token = context.attach(trace.set_span_in_context(span))
        try:
            return wrapped(*args, **kwargs)
        finally:
            context.detach(token)
            span.end()
            instruments.duration.record(time.perf_counter() - start, metric_attributes)
            instruments.token_usage.record(24, dict(input_attrs))
            instruments.token_usage.record(40, dict(output_attrs))

    def on() -> None:
        wrapt.wrap_function_wrapper(httpx2, "Client.send", send)

    def off() -> None:
        unwrap(httpx2.Client, "send")

    return Toggle(on, off)


def cpu_per_call(call: Callable[[], None], n: int) -> float:
    gc.collect()
    t0 = time.process_time_ns()
    for _ in range(n):
        call()
    return (time.process_time_ns() - t0) / n / 1e3


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return q[0], statistics.median(values), q[2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=50, help="plain calls per block")
    parser.add_argument("--stream-calls", type=int, default=10, help="streamed calls per block")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS[:3]), choices=CONFIGS)
    parser.add_argument("--modes", nargs="+", default=["plain", "stream"], choices=["plain", "stream"])
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, str(HARNESS / "fake_openai_server.py"), "--port", "0", "--max-seconds", "3600"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(json.loads(server.stdout.readline())["port"])
        results = measure(port, args)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    report(results, args)


def measure(port: int, args: Any) -> dict[str, Any]:
    spans, _metric_reader, _logs = shared.setup_sdk()
    import openai

    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-bench-not-a-real-key", max_retries=0, timeout=10.0
    )

    def plain() -> None:
        r = client.chat.completions.create(
            model=shared.REQUEST_MODEL, messages=shared.MESSAGES, temperature=0.2, max_tokens=64
        )
        assert r.choices[0].finish_reason == "stop"

    def stream() -> None:
        for _ in client.chat.completions.create(
            model=shared.REQUEST_MODEL,
            messages=shared.MESSAGES,
            temperature=0.2,
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass

    factories: dict[str, Callable[[], Toggle]] = {
        "otel-llm": _otel_llm,
        "genai-openai": _genai_openai,
        "otel-llm-noop": _otel_llm_noop,
        "otel-llm-spans-only": _otel_llm_spans_only,
    }
    toggles = {name: factories[name]() for name in args.configs if name in factories}
    if "sdk-floor" in args.configs:
        # The floor copies the attributes otel-llm actually sets on this call.
        probe = toggles.get("otel-llm") or _otel_llm()
        probe.on()
        plain()
        probe.off()
        last = spans.last
        span_attributes = dict(last.attributes)
        keys = (
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "server.address",
            "server.port",
            "gen_ai.request.model",
            "gen_ai.response.model",
        )
        toggles["sdk-floor"] = _sdk_floor(span_attributes, {k: span_attributes[k] for k in keys})

    for name, toggle in toggles.items():  # warm-up, and a check that each one makes one span per call
        toggle.on()
        before = spans.count
        for _ in range(30):
            plain()
        for _ in range(10):
            stream()
        toggle.off()
        expected = 0 if name == "otel-llm-noop" else 40
        if spans.count - before != expected:
            raise SystemExit(f"{name}: {spans.count - before} spans for 40 calls, expected {expected}")
    for _ in range(30):
        plain()

    rng = random.Random(args.seed)
    out: dict[str, Any] = {}
    for mode, call, n in (("plain", plain, args.calls), ("stream", stream, args.stream_calls)):
        if mode not in args.modes:
            continue
        overheads: dict[str, list[float]] = {name: [] for name in toggles}
        baselines: list[float] = []
        started = time.monotonic()
        for round_no in range(args.rounds):
            order = list(toggles)
            rng.shuffle(order)
            for name in order:
                before = spans.count
                base_before = cpu_per_call(call, n)
                if spans.count != before:
                    raise SystemExit(f"baseline block made spans after {name} was switched off")
                toggles[name].on()
                try:
                    measured = cpu_per_call(call, n)
                finally:
                    toggles[name].off()
                before = spans.count
                base_after = cpu_per_call(call, n)
                if spans.count != before:
                    raise SystemExit(f"baseline block made spans after {name} was switched off")
                baseline = (base_before + base_after) / 2
                baselines.append(baseline)
                overheads[name].append(measured - baseline)
            print(
                f"  {mode}: round {round_no + 1}/{args.rounds} ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        out[mode] = {
            "baseline_us": statistics.median(baselines),
            "overhead_us": {name: quartiles(values) for name, values in overheads.items()},
            "rounds": args.rounds,
            "calls_per_block": n,
        }
    return out


def report(results: dict[str, Any], args: Any) -> None:
    modes = [m for m in ("plain", "stream") if m in results]
    titles = {"plain": "plain call", "stream": "stream (20 content chunks)"}
    peers = [p for p in ("genai-openai",) if p in args.configs]
    print("\n## Paired in-process overhead, CPU µs per call (median [quartiles] over rounds)\n")
    print("| configuration | " + " | ".join(titles[m] for m in modes) + " |")
    print("|---" * (len(modes) + 1) + "|")
    print(
        "| none (baseline CPU per call) | "
        + " | ".join(f"{results[m]['baseline_us']:,.0f}" for m in modes)
        + " |"
    )
    for name in args.configs:
        cells = []
        for mode in modes:
            q1, med, q3 = results[mode]["overhead_us"][name]
            cells.append(f"{med:+,.0f} [{q1:+,.0f} … {q3:+,.0f}]")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if peers:
        print("\n| ratio of medians | " + " | ".join(titles[m] for m in modes) + " |")
        print("|---" * (len(modes) + 1) + "|")
        for name in ("otel-llm", "sdk-floor", "otel-llm-noop", "otel-llm-spans-only"):
            if name not in args.configs:
                continue
            cells = []
            for mode in modes:
                med = results[mode]["overhead_us"]
                best = min(peers, key=lambda p: med[p][1])
                cells.append(f"{med[name][1] / med[best][1]:.2f} (best peer: {best})")
            print(f"| {name} / best peer | " + " | ".join(cells) + " |")
        if "otel-llm" in args.configs and "sdk-floor" in args.configs:
            cells = []
            for mode in modes:
                med = results[mode]["overhead_us"]
                best = min(peers, key=lambda p: med[p][1])
                ours = med["otel-llm"][1] - med["sdk-floor"][1]
                theirs = med[best][1] - med["sdk-floor"][1]
                cells.append(
                    f"{ours:+,.0f} vs {theirs:+,.0f} µs: {ours / theirs:.2f}" if theirs > 0 else "n/a"
                )
            print("| above the SDK floor, otel-llm vs best peer | " + " | ".join(cells) + " |")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
