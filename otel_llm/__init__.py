"""otel-llm: OpenTelemetry GenAI spans and metrics for LLM calls, at the HTTP transport.

Turn it on in code:

    from opentelemetry.sdk.trace import TracerProvider
    from otel_llm import LLMInstrumentor

    LLMInstrumentor().instrument(tracer_provider=TracerProvider())   # or the global providers
    client = openai.OpenAI()
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])   # -> span "chat gpt-4o-mini"

or with no code change (entry point `otel_llm`):

    opentelemetry-instrument python app.py

What it covers: every POST made through `httpx` or `httpx2` (sync and async) to an OpenAI-shaped
endpoint (`/chat/completions`, `/completions`, `/embeddings`, `/responses`: OpenAI, Azure OpenAI and
any OpenAI-compatible server) or to Anthropic's `/v1/messages`. Each call gets one CLIENT span named
`{gen_ai.operation.name} {gen_ai.request.model}` with the GenAI attributes (usage with cache and
reasoning tokens, response id, finish reasons, `server.address`/`server.port`, `error.type`), and the
metrics `gen_ai.client.operation.duration`, `gen_ai.client.token.usage` and, for streams,
`gen_ai.client.operation.time_to_first_chunk`.

Streams: the span ends when the stream ends, fails, is closed or leaves its `with` block, or is
garbage-collected unread (`otel_llm.stream.abandoned=true`). The span also carries
`otel_llm.stream.chunk_count` (SSE data events, `[DONE]` excluded) and
`otel_llm.stream.time_to_last_chunk` (seconds from the request start).

Provider names: from the host (api.deepseek.com -> `deepseek`, ...), else from the SDK that sent the
request (`openai`, `anthropic`). Add your own hosts:

    OTEL_LLM_PROVIDER_HOSTS="localhost:8000=vllm,ollama.internal=ollama"

Message content is off by default. To capture it on spans:

    OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY   # or EVENT_ONLY, SPAN_AND_EVENT

SDKs that trace themselves (anthropic >= 1 opens `anthropic.messages.create` spans whenever a tracer
provider is set): no second span is made; otel-llm adds what that span lacks and records the metrics.
`OTEL_LLM_NATIVE_SDK_SPANS=metrics_only|duplicate` changes that (see `environment_variables`).

Usage never comes from a guess: a response without usage has no token attributes, and the counter
`otel_llm.usage.missing` counts it. For OpenAI streams, ask for usage with
`stream_options={"include_usage": True}`.

Feedback: `otel_llm.feedback.last_call()` gives the trace id, span id and `gen_ai.response.id` of the
last call that ended in this thread or task, to hand to a UI.

Suppression: nothing is recorded inside `opentelemetry.instrumentation.utils.suppress_instrumentation()`.
"""

from __future__ import annotations

from otel_llm.feedback import CallIds, current_call, last_call
from otel_llm.instrumentor import LLMInstrumentor
from otel_llm.version import __version__

__all__ = ["CallIds", "LLMInstrumentor", "__version__", "current_call", "last_call"]
