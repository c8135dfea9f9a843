"""Every recorded interaction replayed through the real SDK: one GenAI span with the right attributes.

The expected values come from a plain reference reading of the recorded body (every SSE event
decoded, no shortcuts), so the instrumentation's cheap byte-scanning parser is checked against it;
a few headline numbers from PROVENANCE.md are pinned by hand as well.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from otel_llm.conventions import attributes as a
from otel_llm.conventions import metrics as m
from tests.fakes.cassette_server import CassetteServer, Interaction, all_cassettes
from tests.otel_llm import _sdk
from tests.otel_llm.conftest import Telemetry


def _cases() -> list[Any]:
    server = CassetteServer()
    out = []
    for name in all_cassettes():
        for index, _item in enumerate(server.cassette(name)):
            out.append(pytest.param(name, index, id=f"{name.split('/', 1)[1]}#{index}"))
    return out


def _events(body: bytes) -> list[dict[str, Any]]:
    out = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].strip() for line in block.split("\n") if line.startswith("data:"))
        if data and data != "[DONE]":
            out.append(json.loads(data))
    return out


def reference(item: Interaction) -> dict[str, Any]:
    """Expected span attributes from a straightforward full decoding of the recorded response."""
    exp: dict[str, Any] = {}
    if item.status >= 400:
        err = json.loads(item.body)["error"]
        exp[a.ERROR_TYPE] = err.get("code") or err.get("type")
        return exp
    anth = item.path.endswith("/messages")
    responses = item.path.endswith("/responses")
    if item.is_sse:
        events = _events(item.body)
        if anth:
            start = next(e for e in events if e["type"] == "message_start")["message"]
            delta = [e for e in events if e["type"] == "message_delta"][-1]
            usage = {**start["usage"], **delta["usage"]}
            obj = {"id": start["id"], "model": start["model"], "usage": usage}
            obj["stop_reason"] = delta["delta"]["stop_reason"]
        elif responses:
            obj = next(e for e in events if e["type"] == "response.completed")["response"]
        else:
            obj = {"id": events[0]["id"], "model": events[-1]["model"]}
            reasons: dict[int, str] = {}
            for e in events:
                for c in e.get("choices") or ():
                    if c.get("finish_reason"):
                        reasons[c["index"]] = c["finish_reason"]
                if e.get("usage"):
                    obj["usage"] = e["usage"]
            obj["choices"] = [{"finish_reason": reasons[i]} for i in sorted(reasons)]
    else:
        obj = json.loads(item.body)
    if "id" in obj and not item.path.endswith("/embeddings"):
        exp[a.GEN_AI_RESPONSE_ID] = obj["id"]
    exp[a.GEN_AI_RESPONSE_MODEL] = obj["model"]
    usage = obj.get("usage") or {}
    if anth:
        read = usage.get("cache_read_input_tokens")
        write = usage.get("cache_creation_input_tokens")
        exp[a.GEN_AI_USAGE_INPUT_TOKENS] = usage["input_tokens"] + (read or 0) + (write or 0)
        exp[a.GEN_AI_USAGE_OUTPUT_TOKENS] = usage["output_tokens"]
        if read is not None:
            exp[a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = read
        if write is not None:
            exp[a.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = write
        exp[a.GEN_AI_RESPONSE_FINISH_REASONS] = (obj["stop_reason"],)
    elif responses:
        exp[a.GEN_AI_USAGE_INPUT_TOKENS] = usage["input_tokens"]
        exp[a.GEN_AI_USAGE_OUTPUT_TOKENS] = usage["output_tokens"]
        exp[a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage["input_tokens_details"]["cached_tokens"]
        exp[a.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage["output_tokens_details"]["reasoning_tokens"]
    else:
        if usage:
            exp[a.GEN_AI_USAGE_INPUT_TOKENS] = usage["prompt_tokens"]
            if "completion_tokens" in usage and not item.path.endswith("/embeddings"):
                exp[a.GEN_AI_USAGE_OUTPUT_TOKENS] = usage["completion_tokens"]
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
            if cached is None:
                cached = usage.get("prompt_cache_hit_tokens")
            if cached is not None:
                exp[a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cached
        else:
            exp[a.OTEL_LLM_USAGE_MISSING] = True
        if "choices" in obj:
            exp[a.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(c["finish_reason"] for c in obj["choices"])
    return exp


def _replay(server: CassetteServer, name: str, index: int) -> tuple[Interaction, Any, BaseException | None]:
    item = server.cassette(name)[index]
    body = _sdk.request_body(item)
    error: BaseException | None = None
    result = None
    if item.path.endswith("/messages"):
        client: Any = _sdk.anthropic_client(server, name, index)
        method = client.messages.create
    else:
        client = _sdk.openai_client(server, name, index)
        method = _sdk.openai_method(client, item)
    with client:
        try:
            result = _sdk.consume(method(**_sdk.split_kwargs(method, body)))
        except (openai.APIStatusError, anthropic.APIStatusError) as exc:
            error = exc
    return item, result, error


@pytest.mark.parametrize(("name", "index"), _cases())
def test_cassette_replay(
    server: CassetteServer, instrument: Callable[..., Telemetry], name: str, index: int
) -> None:
    t = instrument(OTEL_LLM_PROVIDER_HOSTS=f"127.0.0.1:{server.port}=deepseek" if "deepseek" in name else "")
    item, _result, error = _replay(server, name, index)
    assert (error is not None) == (item.status >= 400)

    spans = t.genai_spans()
    assert len(spans) == 1
    span = spans[0]
    attrs = dict(span.attributes or {})
    body = _sdk.request_body(item)
    model = body.get("model") or item.path.split("/deployments/")[1].split("/")[0]
    operation = attrs[a.GEN_AI_OPERATION_NAME]
    assert span.name == f"{operation} {model}"
    assert span.kind.name == "CLIENT"
    assert attrs[a.GEN_AI_REQUEST_MODEL] == model
    assert attrs[a.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[a.SERVER_PORT] == server.port
    expected_provider = (
        "anthropic"
        if item.path.endswith("/messages")
        else "azure.ai.openai"
        if "deployments" in item.path
        else "deepseek"
        if "deepseek" in name
        else "openai"
    )
    assert attrs[a.GEN_AI_PROVIDER_NAME] == expected_provider
    if body.get("stream"):
        assert attrs[a.GEN_AI_REQUEST_STREAM] is True
    else:
        assert a.GEN_AI_REQUEST_STREAM not in attrs

    exp = reference(item)
    for key, value in exp.items():
        assert attrs.get(key) == value, key
    for key in (a.GEN_AI_USAGE_INPUT_TOKENS, a.GEN_AI_USAGE_OUTPUT_TOKENS):
        if key not in exp:
            assert key not in attrs, f"{key} present without usage in the response"
    if item.status >= 400:
        assert span.status.status_code.name == "ERROR"
    else:
        assert span.status.status_code.name == "UNSET"
        if item.is_sse and body.get("stream"):
            assert attrs[a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
            assert attrs[a.OTEL_LLM_STREAM_CHUNK_COUNT] == len(_events(item.body))
            assert attrs[a.OTEL_LLM_STREAM_TIME_TO_LAST_CHUNK] >= attrs[a.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]

    metrics = t.metrics()
    (duration,) = metrics[m.GEN_AI_CLIENT_OPERATION_DURATION]
    assert duration[0][a.GEN_AI_OPERATION_NAME] == operation
    assert duration[0].get(a.ERROR_TYPE) == exp.get(a.ERROR_TYPE)
    assert list(duration[1].explicit_bounds) == list(m.GEN_AI_CLIENT_OPERATION_DURATION_BUCKETS)
    tokens = {p[0][a.GEN_AI_TOKEN_TYPE]: p[1].sum for p in metrics.get(m.GEN_AI_CLIENT_TOKEN_USAGE, [])}
    if a.GEN_AI_USAGE_INPUT_TOKENS in exp:
        assert tokens["input"] == exp[a.GEN_AI_USAGE_INPUT_TOKENS]
    if a.OTEL_LLM_USAGE_MISSING in exp:
        assert tokens == {}
        assert sum(p.value for _, p in metrics[m.OTEL_LLM_USAGE_MISSING]) == 1
    else:
        assert m.OTEL_LLM_USAGE_MISSING not in metrics


@pytest.mark.parametrize(
    ("name", "index", "key", "value"),
    [
        ("openinference/openai_chat_cached_tokens", 1, a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 1280),
        ("openinference/openai_chat_cached_tokens", 1, a.GEN_AI_USAGE_INPUT_TOKENS, 1370),
        (
            "openllmetry/anthropic_messages_prompt_caching_streaming",
            0,
            a.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
            1165,
        ),
        (
            "openllmetry/anthropic_messages_prompt_caching_streaming",
            1,
            a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            1165,
        ),
        (
            "opentelemetry-python-contrib/openai_chat_completion_404_model_not_found",
            0,
            a.ERROR_TYPE,
            "model_not_found",
        ),
        (
            "opentelemetry-python-contrib/openai_responses_create_api_error",
            0,
            a.ERROR_TYPE,
            "model_not_found",
        ),
        (
            "opentelemetry-python-contrib/anthropic_messages_create_404_not_found",
            0,
            a.ERROR_TYPE,
            "not_found_error",
        ),
        (
            "openllmetry/azure_openai_chat_content_filtering",
            0,
            a.GEN_AI_RESPONSE_FINISH_REASONS,
            ("content_filter",),
        ),
    ],
    ids=[
        "oai-cached",
        "oai-cached-input",
        "anth-cache-write",
        "anth-cache-read",
        "oai-404",
        "resp-400",
        "anth-404",
        "azure-filter",
    ],
)
def test_headline_numbers(
    server: CassetteServer, telemetry: Telemetry, name: str, index: int, key: str, value: Any
) -> None:
    _replay(server, name, index)
    (span,) = telemetry.genai_spans()
    assert (span.attributes or {})[key] == value


def test_reasoning_tokens(server: CassetteServer, telemetry: Telemetry) -> None:
    _replay(server, "opentelemetry-python-contrib/openai_responses_create_reasoning_tokens", 0)
    (span,) = telemetry.genai_spans()
    attrs = span.attributes or {}
    assert attrs[a.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] > 0
    assert attrs[a.GEN_AI_REQUEST_REASONING_LEVEL]
    assert attrs[a.OPENAI_API_TYPE] == "responses"


def test_request_parameters(server: CassetteServer, telemetry: Telemetry) -> None:
    name = "opentelemetry-python-contrib/openai_chat_completion_extra_params"
    item = server.cassette(name)[0]
    body = _sdk.request_body(item)
    _replay(server, name, 0)
    (span,) = telemetry.genai_spans()
    attrs = span.attributes or {}
    assert attrs[a.GEN_AI_REQUEST_SEED] == 42
    assert attrs[a.GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert attrs[a.GEN_AI_REQUEST_TEMPERATURE] == body["temperature"]
    assert attrs[a.GEN_AI_OUTPUT_TYPE] == "text"
    assert attrs[a.OPENAI_REQUEST_SERVICE_TIER] == "default"
    assert attrs[a.OPENAI_RESPONSE_SERVICE_TIER] == "default"
    assert attrs[a.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] == "fp_0705bf87c0"


def test_choice_count(server: CassetteServer, telemetry: Telemetry) -> None:
    _replay(server, "opentelemetry-python-contrib/openai_chat_completion_multiple_choices", 0)
    (span,) = telemetry.genai_spans()
    attrs = span.attributes or {}
    assert attrs[a.GEN_AI_REQUEST_CHOICE_COUNT] == 2
    assert len(attrs[a.GEN_AI_RESPONSE_FINISH_REASONS]) == 2
