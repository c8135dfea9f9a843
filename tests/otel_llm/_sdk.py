"""Helpers to drive the real SDKs against the cassette server.

The same tests run with the current SDKs (`openai` >= 3, `anthropic` >= 1, on `httpx2`) and, in the
legacy CI step (`.ci/test-legacy-sdks.sh`), with the older ones (`openai` 2.x, `anthropic` 0.x, on
`httpx`, with `httpx2` not installed). What differs between the two is named here once.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
from types import ModuleType
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.cassette_server import CassetteServer, Interaction


def _http_library(sdk: ModuleType) -> ModuleType:
    """The HTTP library the SDK's clients are built on (`httpx` or `httpx2`)."""
    base = sdk.DefaultHttpxClient.__mro__[1]
    return importlib.import_module(base.__module__.split(".", 1)[0])


OPENAI_MAJOR = int(openai.__version__.split(".", 1)[0])
ANTHROPIC_MAJOR = int(anthropic.__version__.split(".", 1)[0])
OPENAI_HTTP = _http_library(openai)
"""`httpx2` for openai >= 3, `httpx` for openai 2.x."""
ANTHROPIC_HTTP = _http_library(anthropic)
HAS_HTTPX2 = importlib.util.find_spec("httpx2") is not None
ANTHROPIC_NATIVE_TRACING = "open_telemetry" in inspect.signature(anthropic.Anthropic).parameters
"""anthropic >= 1 opens its own `anthropic.messages.create` spans; anthropic 0.x has no tracing."""

needs_httpx2 = pytest.mark.skipif(not HAS_HTTPX2, reason="httpx2 is not installed (legacy SDK run)")
needs_anthropic_tracing = pytest.mark.skipif(
    not ANTHROPIC_NATIVE_TRACING,
    reason=f"anthropic {anthropic.__version__} has no native OpenTelemetry spans",
)

_OPENAI_METHODS = {
    "/chat/completions": lambda c: c.chat.completions.create,
    "/completions": lambda c: c.completions.create,
    "/embeddings": lambda c: c.embeddings.create,
    "/responses": lambda c: c.responses.create,
}


def headers_for(cassette: str, index: int = 0, **extra: str) -> dict[str, str]:
    return {"x-cassette": cassette, "x-cassette-index": str(index), **extra}


def request_body(item: Interaction) -> dict[str, Any]:
    return json.loads(item.request_body or "{}")


def split_kwargs(method: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The recorded body as SDK keyword arguments; keys the method does not know go in `extra_body`."""
    known = set(inspect.signature(method).parameters)
    kwargs = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def openai_client(server: CassetteServer, cassette: str, index: int = 0, **kw: Any) -> openai.OpenAI:
    item = server.cassette(cassette)[index]
    headers = headers_for(cassette, index)
    if "/openai/deployments/" in item.path:
        return openai.AzureOpenAI(
            azure_endpoint=server.url,
            api_key="test",
            api_version="2024-02-01",
            default_headers=headers,
            max_retries=0,
            **kw,
        )
    base = (
        item.path.rsplit("/", 2)[0]
        if item.path.endswith("/chat/completions")
        else item.path.rsplit("/", 1)[0]
    )
    return openai.OpenAI(
        base_url=server.url + base, api_key="test", default_headers=headers, max_retries=0, **kw
    )


def openai_method(client: Any, item: Interaction) -> Any:
    for suffix, pick in _OPENAI_METHODS.items():
        if item.path.endswith(suffix):
            return pick(client)
    raise AssertionError(item.path)


def anthropic_client(server: CassetteServer, cassette: str, index: int = 0, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.url, api_key="test", default_headers=headers_for(cassette, index), max_retries=0, **kw
    )


def async_anthropic_client(
    server: CassetteServer, cassette: str, index: int = 0, **kw: Any
) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=server.url, api_key="test", default_headers=headers_for(cassette, index), max_retries=0, **kw
    )


def async_openai_client(
    server: CassetteServer, cassette: str, index: int = 0, **kw: Any
) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.url + "/v1",
        api_key="test",
        default_headers=headers_for(cassette, index),
        max_retries=0,
        **kw,
    )


def consume(result: Any) -> Any:
    """Reads a stream to its end (returns the list of events) or returns the result as is."""
    if isinstance(result, (openai.Stream, anthropic.Stream)):
        with result:
            return list(result)
    return result
