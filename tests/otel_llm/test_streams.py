"""Every way a stream can end, sync and async, OpenAI and Anthropic: exactly one span end each."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry import trace

from otel_llm.conventions import attributes as a
from otel_llm.conventions import metrics as m
from tests.fakes.cassette_server import CassetteServer
from tests.otel_llm import _sdk
from tests.otel_llm.conftest import Telemetry

OAI = "opentelemetry-python-contrib/openai_chat_completion_streaming_with_usage"
OAI_EVENTS = 8  # data events in the recording, [DONE] excluded
ANTH = "opentelemetry-python-contrib/anthropic_messages_create_streaming"
ANTH_EVENTS = 7
MESSAGES = [{"role": "user", "content": "Say this is a test"}]


@pytest.fixture(autouse=True)
def no_double_end(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING, logger="opentelemetry.sdk.trace")
    yield
    assert not [
        r for r in caplog.records if "already ended" in r.getMessage() or "ended span" in r.getMessage()
    ]


def _openai_stream(server: CassetteServer, **headers: str) -> tuple[openai.OpenAI, Any]:
    client = openai.OpenAI(
        base_url=server.url + "/v1",
        api_key="k",
        max_retries=0,
        default_headers=_sdk.headers_for(OAI, **headers),
    )
    stream = client.chat.completions.create(
        model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    return client, stream


def _anthropic_stream(server: CassetteServer, **headers: str) -> tuple[anthropic.Anthropic, Any]:
    client = anthropic.Anthropic(
        base_url=server.url, api_key="k", max_retries=0, default_headers=_sdk.headers_for(ANTH, **headers)
    )
    stream = client.messages.create(
        model="claude-sonnet-4-20250514", max_tokens=100, messages=MESSAGES, stream=True
    )
    return client, stream


STREAMS = {"openai": _openai_stream, "anthropic": _anthropic_stream}
TOTAL = {"openai": OAI_EVENTS, "anthropic": ANTH_EVENTS}


def _one_span(t: Telemetry) -> dict[str, Any]:
    spans = t.genai_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return dict(spans[0].attributes or {})


@pytest.mark.parametrize("sdk", STREAMS)
def test_read_to_end(server: CassetteServer, telemetry: Telemetry, sdk: str) -> None:
    client, stream = STREAMS[sdk](server)
    with client:
        events = list(stream)
    assert events
    attrs = _one_span(telemetry)
    assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] == TOTAL[sdk]
    assert a.OTEL_LLM_STREAM_ABANDONED not in attrs
    assert attrs[a.GEN_AI_USAGE_OUTPUT_TOKENS] == 5
    assert attrs[a.GEN_AI_RESPONSE_FINISH_REASONS] in (("stop",), ("end_turn",))


@pytest.mark.parametrize("sdk", STREAMS)
def test_break_then_context_exit(server: CassetteServer, telemetry: Telemetry, sdk: str) -> None:
    client, stream = STREAMS[sdk](server, **{"x-fake-chunk-delay": "0.01"})
    with client, stream:
        for i, _ in enumerate(stream):
            if i == 1:
                break
        assert telemetry.genai_spans() == []  # still open while the stream is
    attrs = _one_span(telemetry)
    assert 0 < attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] < TOTAL[sdk]
    assert a.OTEL_LLM_STREAM_ABANDONED not in attrs
    assert a.GEN_AI_USAGE_OUTPUT_TOKENS not in attrs


@pytest.mark.parametrize("sdk", STREAMS)
def test_close_before_reading(server: CassetteServer, telemetry: Telemetry, sdk: str) -> None:
    client, stream = STREAMS[sdk](server)
    with client:
        stream.close()
        stream.close()
    attrs = _one_span(telemetry)
    assert a.OTEL_LLM_STREAM_ABANDONED not in attrs
    assert telemetry.metrics()[m.OTEL_LLM_USAGE_MISSING][0][1].value == 1


@pytest.mark.parametrize("sdk", STREAMS)
def test_user_exception_inside_with(server: CassetteServer, telemetry: Telemetry, sdk: str) -> None:
    client, stream = STREAMS[sdk](server)
    with client, pytest.raises(KeyError), stream:
        next(iter(stream))
        raise KeyError("mine")
    _one_span(telemetry)
    (span,) = telemetry.genai_spans()
    # The application's own error is not the LLM call's failure.
    assert span.status.status_code.name == "UNSET"


@pytest.mark.parametrize("sdk", STREAMS)
def test_disconnect_mid_stream(
    server: CassetteServer, instrument: Callable[..., Telemetry], sdk: str
) -> None:
    # The same failure without instrumentation, to compare what the application sees.
    client, stream = STREAMS[sdk](server, **{"x-fake-disconnect-after": "3"})
    with client, pytest.raises(Exception) as plain:
        list(stream)
    telemetry = instrument()
    client, stream = STREAMS[sdk](server, **{"x-fake-disconnect-after": "3"})
    with client, pytest.raises(Exception) as seen:
        list(stream)
    assert type(seen.value) is type(plain.value)
    assert str(seen.value) == str(plain.value)
    (span,) = telemetry.genai_spans()
    attrs = dict(span.attributes or {})
    assert span.status.status_code.name == "ERROR"
    assert (
        attrs[a.ERROR_TYPE] == type(seen.value.__context__ or seen.value).__qualname__ or attrs[a.ERROR_TYPE]
    )
    assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] == 3
    (duration,) = telemetry.metrics()[m.GEN_AI_CLIENT_OPERATION_DURATION]
    assert duration[0][a.ERROR_TYPE] == attrs[a.ERROR_TYPE]


@pytest.mark.parametrize("sdk", STREAMS)
@pytest.mark.parametrize("read", [0, 2], ids=["unread", "partly-read"])
def test_dropped_stream_is_collected(
    server: CassetteServer, telemetry: Telemetry, sdk: str, read: int
) -> None:
    # Slow chunks, so that the body is not all read by the time the application drops the stream.
    client, stream = STREAMS[sdk](server, **{"x-fake-chunk-delay": "0.05"})
    it = iter(stream)
    for _ in range(read):
        next(it)
    del stream, it
    gc.collect()
    attrs = _one_span(telemetry)
    if sdk == "anthropic" and read:
        # anthropic's stream generator closes the response in a `finally` when it is collected, which
        # is an ordinary close() for us: ended once, not marked abandoned.
        assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] < TOTAL[sdk]
    else:
        assert attrs[a.OTEL_LLM_STREAM_ABANDONED] is True
    client.close()


def test_time_to_first_chunk_from_request_start(server: CassetteServer, telemetry: Telemetry) -> None:
    client, stream = _openai_stream(server, **{"x-fake-delay": "0.15", "x-fake-chunk-delay": "0.02"})
    with client:
        list(stream)
    attrs = _one_span(telemetry)
    ttfc = attrs[a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0.15 <= ttfc < 1.5
    assert attrs[a.OTEL_LLM_STREAM_TIME_TO_LAST_CHUNK] >= ttfc + 0.02 * (OAI_EVENTS - 2)
    ((_, point),) = telemetry.metrics()[m.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK]
    assert point.sum == pytest.approx(ttfc)
    assert list(point.explicit_bounds) == list(m.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK_BUCKETS)
    assert m.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK not in telemetry.metrics()


def test_time_per_output_chunk_opt_in(server: CassetteServer, instrument: Callable[..., Telemetry]) -> None:
    t = instrument(OTEL_LLM_TIME_PER_OUTPUT_CHUNK="true")
    client, stream = _openai_stream(server, **{"x-fake-chunk-delay": "0.01"})
    with client:
        list(stream)
    attrs = _one_span(t)
    ((_, point),) = t.metrics()[m.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK]
    # One point per chunk after the first, as the conventions define it; [DONE] is no chunk.
    assert point.count == OAI_EVENTS - 1 == attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] - 1
    assert point.min >= 0.005
    span_window = attrs[a.OTEL_LLM_STREAM_TIME_TO_LAST_CHUNK] - attrs[a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert 0.005 * (OAI_EVENTS - 1) <= point.sum <= span_window + 1e-6
    assert list(point.explicit_bounds) == list(m.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK_BUCKETS)


def test_stream_helper(server: CassetteServer, telemetry: Telemetry) -> None:
    name = "opentelemetry-python-contrib/anthropic_messages_stream_helper"
    with (
        _sdk.anthropic_client(server, name) as client,
        client.messages.stream(model="claude-sonnet-4-20250514", max_tokens=100, messages=MESSAGES) as stream,
    ):
        text = stream.get_final_text()
    assert text
    attrs = _one_span(telemetry)
    assert attrs[a.GEN_AI_USAGE_INPUT_TOKENS] > 0


# --- async ---------------------------------------------------------------------------------------


async def _async_openai(server: CassetteServer, **headers: str) -> tuple[Any, Any]:
    client = openai.AsyncOpenAI(
        base_url=server.url + "/v1",
        api_key="k",
        max_retries=0,
        default_headers=_sdk.headers_for(OAI, **headers),
    )
    stream = await client.chat.completions.create(
        model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    return client, stream


async def _async_anthropic(server: CassetteServer, **headers: str) -> tuple[Any, Any]:
    client = _sdk.async_anthropic_client(server, ANTH)
    client = client.with_options(default_headers=_sdk.headers_for(ANTH, **headers))
    stream = await client.messages.create(
        model="claude-sonnet-4-20250514", max_tokens=100, messages=MESSAGES, stream=True
    )
    return client, stream


ASTREAMS = {"openai": _async_openai, "anthropic": _async_anthropic}


@pytest.mark.parametrize("sdk", ASTREAMS)
def test_async_read_to_end(server: CassetteServer, telemetry: Telemetry, sdk: str) -> None:
    async def run() -> None:
        client, stream = await ASTREAMS[sdk](server)
        async with client:
            async for _ in stream:
                pass

    asyncio.run(run())
    attrs = _one_span(telemetry)
    assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] == TOTAL[sdk]
    assert attrs[a.GEN_AI_USAGE_OUTPUT_TOKENS] == 5


@pytest.mark.parametrize("sdk", ASTREAMS)
def test_async_break_and_aclose(server: CassetteServer, telemetry: Telemetry, sdk: str) -> None:
    async def run() -> None:
        client, stream = await ASTREAMS[sdk](server, **{"x-fake-chunk-delay": "0.01"})
        async with client:
            async for _ in stream:
                break
            await stream.close()

    asyncio.run(run())
    attrs = _one_span(telemetry)
    assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] < TOTAL[sdk]
    assert a.OTEL_LLM_STREAM_ABANDONED not in attrs


@pytest.mark.parametrize("sdk", ASTREAMS)
def test_async_context_manager(server: CassetteServer, telemetry: Telemetry, sdk: str) -> None:
    async def run() -> None:
        client, stream = await ASTREAMS[sdk](server)
        async with client, stream:
            async for _ in stream:
                break

    asyncio.run(run())
    _one_span(telemetry)


@pytest.mark.parametrize("sdk", ASTREAMS)
def test_async_disconnect(server: CassetteServer, telemetry: Telemetry, sdk: str) -> None:
    async def run() -> None:
        client, stream = await ASTREAMS[sdk](server, **{"x-fake-disconnect-after": "2"})
        async with client:
            async for _ in stream:
                pass

    http = _sdk.OPENAI_HTTP if sdk == "openai" else _sdk.ANTHROPIC_HTTP
    with pytest.raises((http.RemoteProtocolError, openai.APIError, anthropic.APIError)):
        asyncio.run(run())
    (span,) = telemetry.genai_spans()
    assert span.status.status_code.name == "ERROR"
    assert (span.attributes or {})[a.OTEL_LLM_STREAM_CHUNK_COUNT] == 2


def test_async_cancelled(server: CassetteServer, telemetry: Telemetry) -> None:
    async def run() -> None:
        client, stream = await _async_openai(server, **{"x-fake-chunk-delay": "0.2"})
        async with client:

            async def read() -> None:
                async for _ in stream:
                    pass

            task = asyncio.create_task(read())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await stream.close()

    asyncio.run(run())
    (span,) = telemetry.genai_spans()
    assert (span.attributes or {})[a.ERROR_TYPE] == "CancelledError"


def test_many_async_streams_at_once(server: CassetteServer, telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    n = 40

    async def one(i: int, client: Any) -> int:
        with tracer.start_as_current_span(f"parent {i}") as parent:
            stream = await client.chat.completions.create(
                model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            async for _ in stream:
                await asyncio.sleep(0)
            return parent.get_span_context().span_id

    async def run() -> list[int]:
        client = openai.AsyncOpenAI(
            base_url=server.url + "/v1",
            api_key="k",
            max_retries=0,
            default_headers=_sdk.headers_for(OAI, **{"x-fake-chunk-delay": "0.005"}),
        )
        async with client:
            return await asyncio.gather(*(one(i, client) for i in range(n)))

    parents = asyncio.run(run())
    spans = telemetry.genai_spans()
    assert len(spans) == n
    assert sorted(s.parent.span_id for s in spans if s.parent) == sorted(parents)
    assert all((s.attributes or {})[a.GEN_AI_USAGE_OUTPUT_TOKENS] == 5 for s in spans)
    assert all((s.attributes or {})[a.OTEL_LLM_STREAM_CHUNK_COUNT] == OAI_EVENTS for s in spans)
    points = telemetry.metrics()[m.GEN_AI_CLIENT_OPERATION_DURATION]
    assert sum(p.count for _, p in points) == n


def test_stream_consumed_in_another_thread_keeps_its_parent(
    server: CassetteServer, telemetry: Telemetry
) -> None:
    import threading

    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request handler") as parent:
        client, stream = _openai_stream(server)
    worker = threading.Thread(target=lambda: list(stream))
    worker.start()
    worker.join()
    client.close()
    (span,) = telemetry.genai_spans()
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert trace.get_current_span() is trace.INVALID_SPAN
