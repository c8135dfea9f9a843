"""Which provider and which operation a request is for, from its host, path and headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from otel_llm._providers import openai as oai

# Hosts whose `gen_ai.provider.name` is known (values from the conventions' well-known list, or the
# provider's own name when the list has none).
KNOWN_HOSTS: Mapping[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.deepseek.com": "deepseek",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "api.moonshot.ai": "moonshot_ai",
    "api.moonshot.cn": "moonshot_ai",
    "api.cohere.ai": "cohere",
    "api.cohere.com": "cohere",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together_ai",
    "api.fireworks.ai": "fireworks_ai",
    "generativelanguage.googleapis.com": "gcp.gemini",
}

ANTHROPIC_MESSAGES = "anthropic_messages"


class Endpoint(NamedTuple):
    provider: str
    operation: str  # gen_ai.operation.name
    api: str  # oai.CHAT, oai.COMPLETIONS, oai.EMBEDDINGS, oai.RESPONSES or ANTHROPIC_MESSAGES


def parse_host_map(value: str | None) -> dict[str, str]:
    """`host[:port]=provider,...` → {"host[:port]": provider}; malformed entries are skipped."""
    result: dict[str, str] = {}
    for entry in (value or "").split(","):
        host, sep, provider = entry.partition("=")
        host, provider = host.strip().lower(), provider.strip()
        if sep and host and provider:
            result[host] = provider
    return result


def _api_for_path(path: str) -> tuple[str, str] | None:
    if path.endswith("/chat/completions"):
        return oai.CHAT, "chat"
    if path.endswith("/completions"):
        return oai.COMPLETIONS, "text_completion"
    if path.endswith("/embeddings"):
        return oai.EMBEDDINGS, "embeddings"
    if path.endswith("/responses"):
        return oai.RESPONSES, "chat"
    if path.endswith("/messages"):
        return ANTHROPIC_MESSAGES, "chat"
    return None


def recognise(
    host: str,
    port: int | None,
    path: str,
    headers: Mapping[str, str],
    host_map: Mapping[str, str],
) -> Endpoint | None:
    """The endpoint of a POST to `host:port/path`, or None when it is not an LLM call we know.

    Provider: the configured host map (host:port first, then host), Azure OpenAI by host or path, the
    built-in host table, then the SDK that sent the request (user-agent), then the API's own flavour.
    """
    found = _api_for_path(path.rstrip("/"))
    if found is None:
        return None
    api, operation = found
    # Header lookups are among the dearest steps here (httpx scans its header list for each), so the
    # user-agent is read only when the host alone does not settle the question.
    ua: str | None = None
    if api == ANTHROPIC_MESSAGES and "anthropic" not in host and "anthropic-version" not in headers:
        ua = headers.get("user-agent", "")
        if not ua.startswith(("Anthropic", "AsyncAnthropic")):
            return None
    provider = None
    if host_map:
        provider = host_map.get(f"{host}:{port}") if port is not None else None
        provider = provider or host_map.get(host)
    if provider is None:
        if (
            host.endswith((".openai.azure.com", ".cognitiveservices.azure.com"))
            or "/openai/deployments/" in path
        ):
            provider = "azure.ai.openai"
        else:
            provider = KNOWN_HOSTS.get(host)
    if provider is None:
        if ua is None:
            ua = headers.get("user-agent", "")
        if ua.startswith(("OpenAI/", "AsyncOpenAI/", "AzureOpenAI/", "AsyncAzureOpenAI/")):
            provider = "openai"
        elif ua.startswith(("Anthropic/", "AsyncAnthropic/")):
            provider = "anthropic"
        else:
            provider = "anthropic" if api == ANTHROPIC_MESSAGES else "openai"
    return Endpoint(provider, operation, api)
