"""Small pure pieces: provider recognition, settings from the environment, the SSE scanner, the surface."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

import otel_llm
from otel_llm import _config, environment_variables
from otel_llm._providers._common import Result, SseScanner, loads
from otel_llm._providers.anthropic import MessagesStream
from otel_llm._providers.compat import Endpoint, parse_host_map, recognise
from otel_llm._providers.openai import CHAT, EMBEDDINGS, ChatStream, request_attributes

UA_OPENAI = {"user-agent": "OpenAI/Python 3.57.0"}


@pytest.mark.parametrize(
    ("host", "port", "path", "headers", "expected"),
    [
        (
            "api.openai.com",
            443,
            "/v1/chat/completions",
            UA_OPENAI,
            Endpoint("openai", "chat", "chat_completions"),
        ),
        ("api.openai.com", 443, "/v1/responses", UA_OPENAI, Endpoint("openai", "chat", "responses")),
        ("api.openai.com", 443, "/v1/embeddings", UA_OPENAI, Endpoint("openai", "embeddings", "embeddings")),
        (
            "api.openai.com",
            443,
            "/v1/completions",
            UA_OPENAI,
            Endpoint("openai", "text_completion", "completions"),
        ),
        (
            "api.deepseek.com",
            443,
            "/chat/completions",
            UA_OPENAI,
            Endpoint("deepseek", "chat", "chat_completions"),
        ),
        (
            "api.groq.com",
            443,
            "/openai/v1/chat/completions",
            {},
            Endpoint("groq", "chat", "chat_completions"),
        ),
        (
            "api.mistral.ai",
            443,
            "/v1/chat/completions",
            {},
            Endpoint("mistral_ai", "chat", "chat_completions"),
        ),
        ("api.x.ai", 443, "/v1/chat/completions", {}, Endpoint("x_ai", "chat", "chat_completions")),
        (
            "openrouter.ai",
            443,
            "/api/v1/chat/completions",
            {},
            Endpoint("openrouter", "chat", "chat_completions"),
        ),
        (
            "res.openai.azure.com",
            443,
            "/openai/deployments/d/chat/completions",
            {},
            Endpoint("azure.ai.openai", "chat", "chat_completions"),
        ),
        (
            "localhost",
            8000,
            "/v1/chat/completions",
            UA_OPENAI,
            Endpoint("openai", "chat", "chat_completions"),
        ),
        (
            "api.anthropic.com",
            443,
            "/v1/messages",
            {"anthropic-version": "2023-06-01"},
            Endpoint("anthropic", "chat", "anthropic_messages"),
        ),
        ("localhost", 8000, "/v1/messages", {}, None),  # not Anthropic-shaped without its header
        ("api.anthropic.com", 443, "/v1/messages/count_tokens", {"anthropic-version": "x"}, None),
        ("api.openai.com", 443, "/v1/models", UA_OPENAI, None),
    ],
)
def test_recognise(
    host: str, port: int, path: str, headers: dict[str, str], expected: Endpoint | None
) -> None:
    assert recognise(host, port, path, headers, {}) == expected


def test_host_map_wins_port_first() -> None:
    hosts = parse_host_map(" localhost:8000=vllm , localhost=ollama, bad, =x, y= ")
    assert hosts == {"localhost:8000": "vllm", "localhost": "ollama"}
    assert recognise("localhost", 8000, "/v1/chat/completions", UA_OPENAI, hosts).provider == "vllm"
    assert recognise("localhost", 11434, "/v1/chat/completions", UA_OPENAI, hosts).provider == "ollama"
    assert (
        recognise("api.openai.com", 443, "/v1/chat/completions", {}, {"api.openai.com": "proxy"}).provider
        == "proxy"
    )


def test_settings_defaults_and_values() -> None:
    s = _config.from_environment({})
    assert s.content_mode is _config.ContentMode.NO_CONTENT
    assert not s.capture_content and not s.emit_event
    assert s.native_spans is _config.NativeSpans.COMPLETE
    assert s.client_metrics and not s.time_per_output_chunk
    off = _config.from_environment(
        {"OTEL_LLM_CLIENT_METRICS": "False", "OTEL_LLM_TIME_PER_OUTPUT_CHUNK": "true"}
    )
    assert not off.client_metrics and not off.time_per_output_chunk
    assert not _config.Settings(client_metrics=False, time_per_output_chunk=True).time_per_output_chunk
    assert _config.from_environment({"OTEL_LLM_CLIENT_METRICS": "no"}).client_metrics  # not `false`: default
    s = _config.from_environment(
        {
            "OTEL_SEMCONV_STABILITY_OPT_IN": "http, gen_ai_latest_experimental",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_and_event",
            "OTEL_LLM_CONTENT_MAX_LENGTH": "-3",
            "OTEL_LLM_NATIVE_SDK_SPANS": "METRICS_ONLY",
            "OTEL_LLM_TIME_PER_OUTPUT_CHUNK": "TRUE",
        }
    )
    assert s.content_on_span and s.content_in_event
    assert s.content_max_length == _config.DEFAULT_CONTENT_MAX_LENGTH
    assert s.native_spans is _config.NativeSpans.METRICS_ONLY
    assert s.time_per_output_chunk


def _feed_in_pieces(parser: ChatStream | MessagesStream, body: bytes, size: int) -> None:
    for i in range(0, len(body), size):
        parser.feed(body[i : i + size])
    parser.finish()


@pytest.mark.parametrize("size", [1, 3, 7, 64, 100000])
def test_chat_stream_any_split(size: int) -> None:
    body = (
        b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\r\n\r\n'
        b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason": "length"}]}\n\n'
        b'data: {"id":"c1","model":"m","choices":[],"usage": {"prompt_tokens":3,"completion_tokens":4}}\n\n'
        b"data: [DONE]\n\n"
    )
    r = Result()
    _feed_in_pieces(ChatStream("chat_completions", r, False), body, size)
    assert (r.response_id, r.finish_reasons, r.input_tokens, r.output_tokens, r.terminal) == (
        "c1",
        ["length"],
        3,
        4,
        True,
    )


def test_scanner_decodes_only_interesting_events() -> None:
    seen: list[object] = []
    scanner = SseScanner(lambda block: b"keep" in block, seen.append, False)
    scanner.feed(b'data: {"a":"skip"}\n\ndata: {"a":"keep"}\n\ndata: {"a":"ke')
    scanner.feed(b'ep2"}\n\n')
    scanner.feed(b'data: {"a":"keep3"}')
    scanner.flush()
    assert seen == [{"a": "keep"}, {"a": "keep2"}, {"a": "keep3"}]


def test_anthropic_stream_without_message_delta_has_no_output_tokens() -> None:
    body = (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"id":"msg_1","model":"c","usage":'
        b'{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":2,"output_tokens":1}}}\n\n'
    )
    r = Result()
    _feed_in_pieces(MessagesStream(r, False), body, 16)
    assert (r.input_tokens, r.cache_read, r.cache_write, r.output_tokens) == (17, 5, 2, None)


def test_public_surface() -> None:
    assert sorted(otel_llm.__all__) == [
        "CallIds",
        "LLMInstrumentor",
        "__version__",
        "current_call",
        "last_call",
    ]
    for name in environment_variables.__all__:
        assert getattr(environment_variables, name) == name
        assert getattr(environment_variables, name).startswith("OTEL_")


def test_entry_point_declared() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    eps = pyproject["project"]["entry-points"]["opentelemetry_instrumentor"]
    assert eps["otel_llm"] == "otel_llm.instrumentor:LLMInstrumentor"
    module, _, attr = eps["otel_llm"].partition(":")
    assert getattr(importlib.import_module(module), attr) is otel_llm.LLMInstrumentor


def test_instrumentation_dependencies_are_lenient() -> None:
    assert list(otel_llm.LLMInstrumentor().instrumentation_dependencies()) == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a": 1}', {"a": 1}),
        (bytearray(b'{"a": 1}'), {"a": 1}),
        ('{"a": "\u00e9"}', {"a": "\u00e9"}),
        ("\ufeff{}".encode(), {}),  # UTF-8 with a byte-order mark
        (b'{"a": "\xff"}', None),  # not UTF-8
        (b"not json", None),
        (b'{"a": 1} trailing', None),
        (b"", None),
    ],
)
def test_loads(data: bytes | str, expected: object) -> None:
    assert loads(data) == expected


def test_chat_request_attributes_read_only_well_typed_fields() -> None:
    attrs: dict[str, object] = {}
    body = {
        "model": "m",
        "messages": [],
        "max_tokens": 10,
        "max_completion_tokens": 20,  # the newer name wins
        "temperature": True,  # a JSON true is no temperature
        "top_p": 0.5,
        "seed": "7",  # nor is a string a seed
        "n": 2,
        "stop": "END",
        "dimensions": 64,  # not a chat parameter
        "service_tier": "flex",
    }
    request_attributes(CHAT, body, attrs)
    assert attrs == {
        "gen_ai.request.max_tokens": 20,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.choice.count": 2,
        "gen_ai.request.stop_sequences": ["END"],
        "openai.request.service_tier": "flex",
    }


def test_embeddings_request_attributes() -> None:
    attrs: dict[str, object] = {}
    request_attributes(
        EMBEDDINGS, {"model": "e", "input": "x", "dimensions": 64, "encoding_format": "float"}, attrs
    )
    assert attrs == {"gen_ai.embeddings.dimension.count": 64, "gen_ai.request.encoding_formats": ["float"]}
