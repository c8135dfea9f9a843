"""The gaps between chunks behind `gen_ai.client.operation.time_per_output_chunk`, fed by hand.

The stream tests drive this through the SDKs; here the network reads are made up, so that events
arriving together, the `[DONE]` marker and the bounded buffer can be checked exactly.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace

from otel_llm import _call, _stream
from otel_llm._call import LLMCall, Runtime
from otel_llm._config import Settings
from otel_llm._instruments import Instruments
from otel_llm._providers.compat import recognise
from otel_llm.conventions import metrics as m
from tests.otel_llm.conftest import Telemetry, make_telemetry


def _event(i: int) -> bytes:
    return b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"w%d"}}]}\n\n' % i


LAST = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
DONE = b"data: [DONE]\n\n"


def _call_with(t: Telemetry, settings: Settings | None = None) -> LLMCall:
    runtime = Runtime(
        t.tracer_provider.get_tracer("t"),
        t.logger_provider.get_logger("t"),
        Instruments(t.meter_provider.get_meter("t")),
        Settings(time_per_output_chunk=True) if settings is None else settings,
    )
    endpoint = recognise("127.0.0.1", 8000, "/v1/chat/completions", {"user-agent": "OpenAI/Python 3"}, {})
    assert endpoint is not None
    call = LLMCall(
        runtime, endpoint, {"model": "m", "stream": True}, "127.0.0.1", 8000, "/v1/chat/completions"
    )
    call.on_response(200, "text/event-stream")
    return call


class _Reads:
    """Feeds network reads through the stream tee's own per-read step, at made-up times."""

    def __init__(self, call: LLMCall, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        monkeypatch.setattr(_stream, "perf_counter", lambda: self.now)
        self._watch = _stream._watcher(call)

    def __call__(self, now: float, data: bytes) -> None:
        self.now = now
        self._watch(data)


def _gaps_point(t: Telemetry) -> object:
    ((_, point),) = t.metrics()[m.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK]
    return point


def test_events_read_together_are_zero_apart_and_done_is_no_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_telemetry()
    call = _call_with(t)
    read = _Reads(call, monkeypatch)
    read(10.0, _event(0) + _event(1))  # first event, then one 0 s after it
    read(10.5, _event(2)[:20])  # half an event: nothing completed yet
    read(10.75, _event(2)[20:])  # completes at 10.75: 0.75 s after the last one
    read(11.0, LAST + DONE)  # 0.25 s, then [DONE], which is dropped
    call.end()
    point = _gaps_point(t)
    assert point.count == 3  # type: ignore[attr-defined]
    assert point.sum == pytest.approx(1.0)  # type: ignore[attr-defined]
    assert point.min == 0.0  # type: ignore[attr-defined]
    assert point.max == pytest.approx(0.75)  # type: ignore[attr-defined]
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_gaps_are_recorded_in_bounded_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_call, "CHUNK_GAPS_BUFFER", 8)
    t = make_telemetry()
    call = _call_with(t)
    read = _Reads(call, monkeypatch)
    for i in range(30):
        read(100.0 + i, _event(i))  # perf_counter() times, never 0
        assert call.chunk_gaps is not None and len(call.chunk_gaps) < 8
    assert _gaps_point(t).count == 28  # type: ignore[attr-defined]  # 4 batches of 7, the newest kept
    read(130.0, DONE)
    call.end()
    point = _gaps_point(t)
    assert point.count == 29  # type: ignore[attr-defined]  # 30 chunks; [DONE] dropped
    assert point.sum == pytest.approx(29.0)  # type: ignore[attr-defined]


def test_no_gaps_without_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_telemetry()
    call = _call_with(t, Settings())
    assert call.chunk_gaps is None
    read = _Reads(call, monkeypatch)
    read(1.0, _event(0) + _event(1))
    call.end()
    assert m.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK not in t.metrics()
