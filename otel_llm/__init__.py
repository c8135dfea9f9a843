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
`gen_ai.client.operation.time_to_first_chunk` (and `gen_ai.client.operation.time_per_output_chunk`,
one point per chunk, with `OTEL_LLM_TIME_PER_OUTPUT_CHUNK=true`: off by default for its cost).
Behind the otel-llm collector, `OTEL_LLM_CLIENT_METRICS=false` leaves those histograms to it (its
`genai_metrics` processor derives them from the spans) and saves about a third of the per-call cost.

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

SDKs that trace themselves (anthropic >= 1 opens `anthropic.messages.create` CLIENT spans, scope
`com.anthropic.sdk.python`, whenever a tracer provider is set): when such a span is current at the
transport, otel-llm makes no second span. The call's one GenAI span is then the SDK's: it keeps the
SDK's name (`anthropic.messages.create`, not `chat {model}`; a span's name is the creator's) and its
own usage attributes (cache writes as `gen_ai.usage.cache_write.input_tokens`), and otel-llm adds
what it lacks while it is still open: `gen_ai.response.finish_reasons`, `otel_llm.stream.chunk_count`,
`otel_llm.stream.time_to_last_chunk` and `otel_llm.stream.abandoned`. The metrics are otel-llm's as for
any call. `OTEL_LLM_NATIVE_SDK_SPANS=metrics_only` leaves the SDK's span alone, `=duplicate` adds
otel-llm's own span under it; `ANTHROPIC_OPEN_TELEMETRY=false` turns the SDK's spans off (then every
call gets otel-llm's `chat {model}` span).

Retries: the SDKs retry by sending again, and each attempt is its own span (the failed ones carry
`error.type`). Redirects and auth round trips stay inside one span.

Hook point: `httpx.Client.send` / `httpx2.Client.send` and their async twins (why: see
`otel_llm._transport`). An HTTP span made by `opentelemetry-instrumentation-httpx` nests under the
GenAI span. Requests sent without a client (`transport.handle_request` directly) are not seen.

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
