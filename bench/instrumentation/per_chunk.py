"""CPU cost per streamed chunk of otel-llm's stream tee, measured directly.

A stream of N SSE events (the harness server's own events: content deltas, finish chunk, usage chunk,
[DONE]; one event per network read, the worst case) is iterated bare and through otel-llm's tee with
a live call (real SDK tracer and meter, counting exporters). The per-call part (span start and end,
metric records) is removed by taking the slope between N=20 and N=200 chunks:

    per-chunk = (tee(200) - bare(200) - (tee(20) - bare(20))) / 180

It also times the floor that no instrumentation can go under: the OpenTelemetry SDK's own cost for
the same span (same attributes) and the same four metric records, with nothing parsed, and reports
otel-llm's fixed per-stream cost against it.

Prints one JSON line. Run with the benchmark venv's Python, repository on PYTHONPATH.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Iterator

from _paths import HARNESS

sys.path.insert(0, str(HARNESS))
import bench_client as shared
import fake_openai_server as fake


class Inner:
    """Stands in for httpx2's network byte stream."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces

    def close(self) -> None:
        pass


def main() -> None:
    import httpx2
    from opentelemetry import metrics, trace

    from otel_llm._call import LLMCall, Runtime
    from otel_llm._config import Settings
    from otel_llm._instruments import Instruments
    from otel_llm._providers.compat import recognise
    from otel_llm._transport import tee_classes

    shared.setup_sdk()
    tee_cls, _ = tee_classes(httpx2)
    runtime = Runtime(
        trace.get_tracer("bench"),
        __import__("opentelemetry._logs", fromlist=["get_logger"]).get_logger("bench"),
        Instruments(metrics.get_meter("bench")),
        Settings(),
    )
    endpoint = recognise("127.0.0.1", 8000, "/v1/chat/completions", {"user-agent": "OpenAI/Python 3"}, {})
    assert endpoint is not None
    body = {"model": "gpt-4o-mini", "stream": True, "messages": []}

    def bare(pieces: list[bytes]) -> None:
        inner = Inner(pieces)
        for _ in inner:
            pass
        inner.close()

    def tee(pieces: list[bytes]) -> None:
        call = LLMCall(runtime, endpoint, body, "127.0.0.1", 8000, "/v1/chat/completions")
        call.on_response(200, "text/event-stream")
        stream = tee_cls(Inner(pieces), call)
        for _ in stream:
            pass
        stream.close()
        assert call.result.output_tokens is not None

    inst = runtime.instruments
    tracer = runtime.tracer

    def sdk_floor(_pieces: list[bytes]) -> None:
        """What the OpenTelemetry SDK alone charges for the same span and metric records (no parsing)."""
        common = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "server.address": "127.0.0.1",
            "server.port": 8000,
            "gen_ai.request.model": "gpt-4o-mini",
        }
        span = tracer.start_span(
            "chat gpt-4o-mini",
            kind=trace.SpanKind.CLIENT,
            attributes={**common, "openai.api.type": "chat_completions", "gen_ai.request.stream": True},
        )
        span.set_attributes(
            {
                "gen_ai.response.finish_reasons": ["stop"],
                "otel_llm.stream.chunk_count": 22,
                "otel_llm.stream.time_to_last_chunk": 0.01,
                "gen_ai.response.id": "chatcmpl-bench",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": 24,
                "gen_ai.usage.output_tokens": 20,
                "gen_ai.usage.cache_read.input_tokens": 0,
                "gen_ai.usage.reasoning.output_tokens": 0,
                "openai.response.service_tier": "default",
                "openai.response.system_fingerprint": "fp_bench",
                "gen_ai.response.time_to_first_chunk": 0.001,
            }
        )
        span.end()
        attrs = {**common, "gen_ai.response.model": "gpt-4o-mini-2024-07-18"}
        inst.duration.record(0.01, attrs)
        inst.token_usage.record(24, {**attrs, "gen_ai.token.type": "input"})
        inst.token_usage.record(20, {**attrs, "gen_ai.token.type": "output"})
        inst.ttfc.record(0.001, attrs)

    def cpu_per_stream(fn: object, pieces: list[bytes], n: int) -> float:
        gc.collect()
        t0 = time.process_time_ns()
        for _ in range(n):
            fn(pieces)  # type: ignore[operator]
        return (time.process_time_ns() - t0) / n / 1e3

    results = {}
    for chunks in (20, 200):
        pieces = fake._sse_events(chunks, include_usage=True)
        reps = 20000 if chunks == 20 else 4000
        cpu_per_stream(tee, pieces, 500)  # warm-up
        best_bare = min(cpu_per_stream(bare, pieces, reps) for _ in range(3))
        best_tee = min(cpu_per_stream(tee, pieces, reps) for _ in range(3))
        results[chunks] = {"events": len(pieces), "bare_us": best_bare, "tee_us": best_tee}
    extra = {k: v["tee_us"] - v["bare_us"] for k, v in results.items()}
    per_chunk = (extra[200] - extra[20]) / (results[200]["events"] - results[20]["events"])
    floor = min(cpu_per_stream(sdk_floor, [], 20000) for _ in range(3))
    fixed = extra[20] - per_chunk * results[20]["events"]
    print(
        json.dumps(
            {
                "per_chunk_us": round(per_chunk, 3),
                "per_stream_fixed_us": round(fixed, 1),
                "sdk_floor_us": round(floor, 1),
                "fixed_over_sdk_floor": round(fixed / floor, 2),
                "runs": results,
            }
        )
    )


if __name__ == "__main__":
    main()
