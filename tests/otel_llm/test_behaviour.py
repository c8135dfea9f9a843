"""Content capture, suppression, uninstrument, native SDK spans, HTTP-span nesting, errors, helpers."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

from otel_llm import LLMInstrumentor, last_call
from otel_llm.conventions import attributes as a
from otel_llm.conventions import events as ev
from otel_llm.conventions import metrics as m
from tests.fakes.cassette_server import CassetteServer
from tests.otel_llm import _sdk
from tests.otel_llm.conftest import Telemetry

CHAT = "opentelemetry-python-contrib/openai_chat_completion"
CHAT_STREAM = "opentelemetry-python-contrib/openai_chat_completion_streaming_with_usage"
TOOLS_STREAM = "opentelemetry-python-contrib/openai_chat_completion_tool_calls_streaming"
ANTH = "opentelemetry-python-contrib/anthropic_messages_create"
ANTH_STREAM = "opentelemetry-python-contrib/anthropic_messages_create_streaming"
ANTH_TOOL = "opentelemetry-python-contrib/anthropic_messages_create_tool_use"
ANTH_THINKING_STREAM = "openllmetry/anthropic_messages_thinking_streaming"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say this is a test"},
]
CONTENT_KEYS = (a.GEN_AI_INPUT_MESSAGES, a.GEN_AI_OUTPUT_MESSAGES, a.GEN_AI_SYSTEM_INSTRUCTIONS)
OPT_IN = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}


def _chat(server: CassetteServer, cassette: str = CHAT, **kw: Any) -> Any:
    with _sdk.openai_client(server, cassette) as client:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kw)


def _replay(server: CassetteServer, cassette: str) -> None:
    item = server.cassette(cassette)[0]
    body = _sdk.request_body(item)
    if item.path.endswith("/messages"):
        client: Any = _sdk.anthropic_client(server, cassette)
        method = client.messages.create
    else:
        client = _sdk.openai_client(server, cassette)
        method = _sdk.openai_method(client, item)
    with client:
        _sdk.consume(method(**_sdk.split_kwargs(method, body)))


def _span(t: Telemetry) -> dict[str, Any]:
    (span,) = t.genai_spans()
    return dict(span.attributes or {})


# --- content --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT"},  # no opt-in
        {**OPT_IN},
        {**OPT_IN, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"},
        {**OPT_IN, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "everything"},
        {**OPT_IN, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "NO_CONTENT"},
    ],
    ids=["default", "mode-without-opt-in", "opt-in-without-mode", "true", "bad-value", "no-content"],
)
def test_content_off(
    server: CassetteServer, instrument: Callable[..., Telemetry], environ: dict[str, str]
) -> None:
    t = instrument(**environ)
    _chat(server)
    attrs = _span(t)
    assert not set(CONTENT_KEYS) & set(attrs)
    assert "this is a test" not in json.dumps(attrs).lower()
    assert t.logs() == []


def test_content_on_span(server: CassetteServer, instrument: Callable[..., Telemetry]) -> None:
    t = instrument(**OPT_IN, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="span_only")
    reply = _chat(server)
    attrs = _span(t)
    assert json.loads(attrs[a.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Say this is a test"}]},
    ]
    assert json.loads(attrs[a.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": reply.choices[0].message.content}],
            "finish_reason": "stop",
        }
    ]
    assert t.logs() == []


def test_content_in_event_only(server: CassetteServer, instrument: Callable[..., Telemetry]) -> None:
    t = instrument(**OPT_IN, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="EVENT_ONLY")
    _chat(server)
    (span,) = t.genai_spans()
    assert not set(CONTENT_KEYS) & set(span.attributes or {})
    (log,) = t.logs()
    record = log.log_record
    assert record.event_name == ev.GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS
    assert record.trace_id == span.context.trace_id
    assert record.span_id == span.context.span_id
    attrs = dict(record.attributes or {})
    assert json.loads(attrs[a.GEN_AI_INPUT_MESSAGES])[1]["parts"][0]["content"] == "Say this is a test"
    assert attrs[a.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[a.GEN_AI_RESPONSE_ID] == (span.attributes or {})[a.GEN_AI_RESPONSE_ID]


def test_content_span_and_event_with_max_length(
    server: CassetteServer, instrument: Callable[..., Telemetry]
) -> None:
    t = instrument(
        **OPT_IN,
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_AND_EVENT",
        OTEL_LLM_CONTENT_MAX_LENGTH="30",
    )
    _chat(server)
    attrs = _span(t)
    assert len(attrs[a.GEN_AI_INPUT_MESSAGES]) == 30
    (log,) = t.logs()
    assert len((log.log_record.attributes or {})[a.GEN_AI_INPUT_MESSAGES]) == 30


def test_emit_event_switch_off(server: CassetteServer, instrument: Callable[..., Telemetry]) -> None:
    t = instrument(
        **OPT_IN,
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_AND_EVENT",
        OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT="false",
    )
    _chat(server)
    assert a.GEN_AI_INPUT_MESSAGES in _span(t)
    assert t.logs() == []


@pytest.mark.parametrize(
    ("cassette", "check"),
    [
        (
            TOOLS_STREAM,
            lambda out: (
                [p["name"] for p in out[0]["parts"] if p["type"] == "tool_call"]
                and all(isinstance(p["arguments"], dict) for p in out[0]["parts"] if p["type"] == "tool_call")
                and out[0]["finish_reason"] == "tool_call"
            ),
        ),
        (
            ANTH_TOOL,
            lambda out: out[0]["parts"][-1]["type"] == "tool_call" and out[0]["finish_reason"] == "tool_call",
        ),
        (
            ANTH_THINKING_STREAM,
            lambda out: out[0]["parts"][0]["type"] == "reasoning" and out[0]["parts"][0]["content"],
        ),
        (
            "opentelemetry-python-contrib/openai_responses_create_tool_call",
            lambda out: out[0]["parts"][-1]["type"] == "tool_call",
        ),
        (
            "opentelemetry-python-contrib/openai_responses_create_streaming",
            lambda out: out[0]["parts"][0]["type"] == "text" and out[0]["parts"][0]["content"],
        ),
        (
            "opentelemetry-python-contrib/openai_chat_completion_multiple_choices_streaming",
            lambda out: len(out) == 2 and all(o["parts"][0]["content"] for o in out),
        ),
    ],
    ids=[
        "openai-tools-stream",
        "anthropic-tool-use",
        "anthropic-thinking-stream",
        "responses-tool",
        "responses-stream",
        "n2-stream",
    ],
)
def test_output_messages_schema(
    server: CassetteServer, instrument: Callable[..., Telemetry], cassette: str, check: Callable[[Any], Any]
) -> None:
    t = instrument(**OPT_IN, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_ONLY")
    _replay(server, cassette)
    attrs = _span(t)
    out = json.loads(attrs[a.GEN_AI_OUTPUT_MESSAGES])
    assert all(msg["role"] == "assistant" and "finish_reason" in msg for msg in out)
    assert check(out)
    assert json.loads(attrs[a.GEN_AI_INPUT_MESSAGES])


# --- suppression, uninstrument --------------------------------------------------------------------


def test_suppressed_calls_are_not_recorded(server: CassetteServer, telemetry: Telemetry) -> None:
    with suppress_instrumentation():
        reply = _chat(server)
    assert reply.choices[0].message.content
    assert telemetry.spans() == []
    assert telemetry.metrics() == {}


def test_uninstrument_restores_send(server: CassetteServer) -> None:
    # httpx always (a dev dependency); httpx2 wherever it is installed (always with openai >= 3).
    libraries = [httpx, *([importlib.import_module("httpx2")] if _sdk.HAS_HTTPX2 else [])]

    def sends() -> list[Any]:
        return [cls.send for lib in libraries for cls in (lib.Client, lib.AsyncClient)]

    originals = sends()
    instrumentor = LLMInstrumentor()
    from tests.otel_llm.conftest import make_telemetry

    t = make_telemetry()
    instrumentor.instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    try:
        assert set(instrumentor.hooked_libraries) == {lib.__name__ for lib in libraries}
        if _sdk.OPENAI_MAJOR >= 3:
            assert set(instrumentor.hooked_libraries) == {"httpx", "httpx2"}
        assert _sdk.OPENAI_HTTP.__name__ in instrumentor.hooked_libraries
        assert all(now is not before for now, before in zip(sends(), originals, strict=True))
        _chat(server)
        assert len(t.genai_spans()) == 1
    finally:
        instrumentor.uninstrument()
    assert sends() == originals
    _chat(server)
    assert len(t.genai_spans()) == 1
    instrumentor.uninstrument()  # twice is harmless


def test_non_llm_requests_pass_untouched(server: CassetteServer, telemetry: Telemetry) -> None:
    with _sdk.OPENAI_HTTP.Client(base_url=server.url) as client:
        assert client.get("/v1/models").status_code == 404
        assert client.post("/v1/files", content=b"x").status_code in (200, 404)
    assert telemetry.spans() == []


# --- SDKs that trace themselves -------------------------------------------------------------------


def _anthropic_native(server: CassetteServer, t: Telemetry, cassette: str, stream: bool) -> None:
    client = _sdk.anthropic_client(server, cassette, open_telemetry={"tracer_provider": t.tracer_provider})
    with client:
        result = client.messages.create(
            model="claude-sonnet-4-20250514", max_tokens=100, messages=MESSAGES[1:], stream=stream
        )
        if stream:
            list(result)


@_sdk.needs_anthropic_tracing
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_native_anthropic_span_completed(
    server: CassetteServer, instrument: Callable[..., Telemetry], stream: bool
) -> None:
    t = instrument()
    _anthropic_native(server, t, ANTH_STREAM if stream else ANTH, stream)
    spans = t.spans()
    assert [s.name for s in spans] == ["anthropic.messages.create"]
    attrs = dict(spans[0].attributes or {})
    assert attrs[a.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert attrs[a.GEN_AI_USAGE_INPUT_TOKENS] == 13
    if stream:
        assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] == 7
    metrics = t.metrics()
    tokens = {p[0][a.GEN_AI_TOKEN_TYPE]: p[1].sum for p in metrics[m.GEN_AI_CLIENT_TOKEN_USAGE]}
    assert tokens == {"input": 13, "output": 5}
    assert sum(p.count for _, p in metrics[m.GEN_AI_CLIENT_OPERATION_DURATION]) == 1


@_sdk.needs_anthropic_tracing
def test_native_anthropic_metrics_only(server: CassetteServer, instrument: Callable[..., Telemetry]) -> None:
    t = instrument(OTEL_LLM_NATIVE_SDK_SPANS="metrics_only")
    _anthropic_native(server, t, ANTH_STREAM, True)
    (span,) = t.spans()
    assert span.name == "anthropic.messages.create"
    assert not [k for k in (span.attributes or {}) if k.startswith("otel_llm.")]
    assert m.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK in t.metrics()


def test_client_metrics_off_leaves_spans_whole(
    server: CassetteServer, instrument: Callable[..., Telemetry]
) -> None:
    t = instrument(OTEL_LLM_CLIENT_METRICS="false", OTEL_LLM_TIME_PER_OUTPUT_CHUNK="true")
    _chat(server)
    _replay(server, CHAT_STREAM)
    plain, streamed = (dict(s.attributes or {}) for s in t.genai_spans())
    for attrs in (plain, streamed):
        # Everything the collector needs to derive the same metrics is on the span.
        assert attrs[a.GEN_AI_USAGE_INPUT_TOKENS] > 0 and attrs[a.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
        assert attrs[a.GEN_AI_RESPONSE_MODEL]
    assert streamed[a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert [name for name in t.metrics() if name.startswith("gen_ai.")] == []


@_sdk.needs_anthropic_tracing
def test_native_anthropic_duplicate(server: CassetteServer, instrument: Callable[..., Telemetry]) -> None:
    t = instrument(OTEL_LLM_NATIVE_SDK_SPANS="duplicate")
    _anthropic_native(server, t, ANTH, False)
    by_name = {s.name: s for s in t.spans()}
    ours = by_name["chat claude-sonnet-4-20250514"]
    native = by_name["anthropic.messages.create"]
    assert ours.parent is not None and ours.parent.span_id == native.context.span_id


@_sdk.needs_anthropic_tracing
def test_native_anthropic_off(server: CassetteServer, instrument: Callable[..., Telemetry]) -> None:
    t = instrument()
    client = _sdk.anthropic_client(server, ANTH, open_telemetry=False)
    with client:
        client.messages.create(model="claude-sonnet-4-20250514", max_tokens=100, messages=MESSAGES[1:])
    assert [s.name for s in t.spans()] == ["chat claude-sonnet-4-20250514"]


@pytest.mark.skipif(_sdk.ANTHROPIC_NATIVE_TRACING, reason="this anthropic opens its own spans (tests above)")
@pytest.mark.parametrize("native", ["", "metrics_only", "duplicate"])
def test_anthropic_without_native_tracing(
    server: CassetteServer, instrument: Callable[..., Telemetry], monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    # anthropic 0.x traces nothing itself: whatever OTEL_LLM_NATIVE_SDK_SPANS says, the call gets
    # otel-llm's own span, complete.
    t = instrument(OTEL_LLM_NATIVE_SDK_SPANS=native)
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY")
    with _sdk.anthropic_client(server, ANTH) as client:
        client.messages.create(model="claude-sonnet-4-20250514", max_tokens=100, messages=MESSAGES[1:])
    (span,) = t.spans()
    assert span.name == "chat claude-sonnet-4-20250514"
    attrs = dict(span.attributes or {})
    assert attrs[a.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attrs[a.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert (attrs[a.GEN_AI_USAGE_INPUT_TOKENS], attrs[a.GEN_AI_USAGE_OUTPUT_TOKENS]) == (13, 5)


# --- the HTTP client span of opentelemetry-instrumentation-httpx ----------------------------------


@pytest.mark.parametrize("order", ["httpx-first", "otel-llm-first"])
def test_http_span_is_a_child(
    server: CassetteServer, instrument: Callable[..., Telemetry], order: str
) -> None:
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")

    from tests.otel_llm.conftest import make_telemetry

    # The instrumentor of the library the SDK sends with: httpx2 for openai >= 3, httpx for 2.x.
    http = (
        instrumentation.HTTPX2ClientInstrumentor()
        if _sdk.OPENAI_HTTP.__name__ == "httpx2"
        else instrumentation.HTTPXClientInstrumentor()
    )
    if order == "httpx-first":
        t = make_telemetry()
        http.instrument(tracer_provider=t.tracer_provider)
        LLMInstrumentor().instrument(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    else:
        t = instrument()
        http.instrument(tracer_provider=t.tracer_provider)
    try:
        with _sdk.openai_client(server, CHAT_STREAM) as client:
            list(
                client.chat.completions.create(
                    model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                )
            )
    finally:
        http.uninstrument()
        if order == "httpx-first":
            LLMInstrumentor().uninstrument()
    (genai,) = t.genai_spans()
    (http_span,) = [s for s in t.spans() if s is not genai]
    assert http_span.parent is not None and http_span.parent.span_id == genai.context.span_id
    assert http_span.context.trace_id == genai.context.trace_id


# --- the application's result and errors are untouched ---------------------------------------------


def test_with_raw_response_and_parse(server: CassetteServer, telemetry: Telemetry) -> None:
    with _sdk.openai_client(server, CHAT) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        parsed = raw.parse()
        assert raw.headers.get("content-type") == "application/json"
        assert raw.http_request.url.path == "/v1/chat/completions"
    assert parsed.usage is not None and parsed.usage.total_tokens > 0
    assert _span(telemetry)[a.GEN_AI_RESPONSE_ID] == parsed.id


def test_with_streaming_response(server: CassetteServer, telemetry: Telemetry) -> None:
    with (
        _sdk.openai_client(server, CHAT_STREAM) as client,
        client.chat.completions.with_streaming_response.create(
            model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ) as response,
    ):
        lines = list(response.iter_lines())
    assert any(line.startswith("data: [DONE]") for line in lines)
    assert _span(telemetry)[a.GEN_AI_USAGE_OUTPUT_TOKENS] == 5


def test_async_with_raw_response_and_aclose(server: CassetteServer, telemetry: Telemetry) -> None:
    async def run() -> Any:
        async with _sdk.async_openai_client(server, CHAT) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
            return raw.parse()

    parsed = asyncio.run(run())
    assert _span(telemetry)[a.GEN_AI_RESPONSE_ID] == parsed.id


def test_connection_error(telemetry: Telemetry) -> None:
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    with client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (span,) = telemetry.genai_spans()
    assert (span.attributes or {})[a.ERROR_TYPE] == "ConnectError"
    assert span.status.status_code.name == "ERROR"
    assert any(e.name == "exception" for e in span.events)


def test_http_status_without_error_code(server: CassetteServer, telemetry: Telemetry) -> None:
    with _sdk.openai_client(server, CHAT) as client, pytest.raises(openai.InternalServerError):
        client.with_options(
            default_headers={**client.default_headers, "x-fake-status": "503"}
        ).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert _span(telemetry)[a.ERROR_TYPE] == "503"


def test_own_fault_is_counted_not_raised(
    server: CassetteServer, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_llm._providers import openai as provider

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("bug in otel-llm")

    monkeypatch.setattr(provider, "apply_body", broken)
    reply = _chat(server)
    assert reply.choices[0].message.content == "This is a test."
    assert len(telemetry.genai_spans()) == 1
    ((labels, point),) = telemetry.metrics()[m.OTEL_LLM_INSTRUMENTATION_ERRORS]
    assert labels[a.ERROR_TYPE] == "ZeroDivisionError"
    assert point.value == 1


def test_fault_before_the_request_is_counted(
    server: CassetteServer, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_llm import _call

    monkeypatch.setattr(_call, "recognise", lambda *args: 1 / 0)
    assert _chat(server).choices[0].message.content
    assert telemetry.spans() == []
    assert telemetry.metrics()[m.OTEL_LLM_INSTRUMENTATION_ERRORS][0][1].value == 1


# --- httpx (the older library), custom transports --------------------------------------------------


def test_openai_sdk_on_an_httpx_client(server: CassetteServer, telemetry: Telemetry) -> None:
    client = openai.OpenAI(
        base_url=server.url + "/v1",
        api_key="k",
        max_retries=0,
        default_headers=_sdk.headers_for(CHAT_STREAM),
        http_client=httpx.Client(),
    )
    with client:
        stream = client.chat.completions.create(
            model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        list(stream)
    attrs = _span(telemetry)
    assert attrs[a.GEN_AI_USAGE_OUTPUT_TOKENS] == 5
    assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] == 8


def test_raw_async_httpx_client(server: CassetteServer, telemetry: Telemetry) -> None:
    async def run() -> bytes:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                server.url + "/v1/messages",
                json={
                    "model": "claude-sonnet-4-20250514",
                    "max_tokens": 10,
                    "messages": MESSAGES[1:],
                    "stream": True,
                },
                headers={"anthropic-version": "2023-06-01", **_sdk.headers_for(ANTH_STREAM)},
            )
            return response.content

    assert b"message_stop" in asyncio.run(run())
    attrs = _span(telemetry)
    assert attrs[a.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attrs[a.GEN_AI_USAGE_OUTPUT_TOKENS] == 5
    # Read by send() itself (stream=False): no first-chunk time to report, but the chunks are counted.
    assert a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK not in attrs
    assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] == 7


def test_custom_transport(telemetry: Telemetry) -> None:
    body = {
        "id": "chatcmpl-1",
        "model": "m-1",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {}}],
    }

    http = _sdk.OPENAI_HTTP  # the SDK checks that `http_client` is a client of its own library

    def handler(request: Any) -> Any:
        return http.Response(200, json=body)

    http_client = http.Client(transport=http.MockTransport(handler))
    with openai.OpenAI(base_url="http://llm.internal/v1", api_key="k", http_client=http_client) as client:
        client.chat.completions.create(model="m", messages=MESSAGES)
    attrs = _span(telemetry)
    assert attrs[a.SERVER_ADDRESS] == "llm.internal"
    assert attrs[a.SERVER_PORT] == 80
    assert attrs[a.GEN_AI_RESPONSE_ID] == "chatcmpl-1"
    assert attrs[a.OTEL_LLM_USAGE_MISSING] is True


def test_provider_host_mapping(server: CassetteServer, instrument: Callable[..., Telemetry]) -> None:
    t = instrument(OTEL_LLM_PROVIDER_HOSTS=f"127.0.0.1:{server.port}=vllm")
    _chat(server)
    assert _span(t)[a.GEN_AI_PROVIDER_NAME] == "vllm"


# --- feedback ------------------------------------------------------------------------------------


def test_last_call_ids(server: CassetteServer, telemetry: Telemetry) -> None:
    reply = _chat(server)
    ids = last_call()
    assert ids is not None
    (span,) = telemetry.genai_spans()
    assert ids.trace_id == format(span.context.trace_id, "032x")
    assert ids.span_id == format(span.context.span_id, "016x")
    assert ids.response_id == reply.id


def test_captured_content_goes_through_redaction(
    server: CassetteServer, instrument: Callable[..., Telemetry]
) -> None:
    from otel_llm import redaction

    t = instrument(**OPT_IN, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_AND_EVENT")
    # Leave the module exactly as found (its environment is read lazily, once).
    saved = (redaction._configured, redaction._active)
    redaction.configure(redaction.Redactor(redaction.RedactionConfig()))
    try:
        with _sdk.openai_client(server, CHAT) as client:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "mail bob@example.org please"}]
            )
    finally:
        redaction._configured, redaction._active = saved
    attrs = _span(t)
    assert "bob@example.org" not in attrs[a.GEN_AI_INPUT_MESSAGES]
    assert "<EMAIL>" in json.loads(attrs[a.GEN_AI_INPUT_MESSAGES])[0]["parts"][0]["content"]
    (log,) = t.logs()
    assert "bob@example.org" not in (log.log_record.attributes or {})[a.GEN_AI_INPUT_MESSAGES]


def test_own_fault_mid_stream_is_counted_not_raised(
    server: CassetteServer, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_llm._providers import _common

    def broken(self: Any, data: bytes) -> None:
        raise ZeroDivisionError("bug in otel-llm")

    monkeypatch.setattr(_common.SseScanner, "feed", broken)
    with _sdk.openai_client(server, CHAT_STREAM) as client:
        stream = client.chat.completions.create(
            model="gpt-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == '"This is a test."'
    (span,) = telemetry.genai_spans()
    assert span.status.status_code.name == "UNSET"
    assert telemetry.metrics()[m.OTEL_LLM_INSTRUMENTATION_ERRORS][0][1].value == 1


def test_embeddings_dimension_count(server: CassetteServer, telemetry: Telemetry) -> None:
    _replay(server, "opentelemetry-python-contrib/openai_embeddings")
    attrs = _span(telemetry)
    assert attrs[a.GEN_AI_OPERATION_NAME] == "embeddings"
    assert attrs[a.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 1536
