"""Environment variables read by the otel-llm instrumentation.

Each constant is the variable's name. All of them are read once, when
`LLMInstrumentor().instrument()` runs; change them before that call.
"""

from __future__ import annotations

__all__ = [
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT",
    "OTEL_LLM_CLIENT_METRICS",
    "OTEL_LLM_CONTENT_MAX_LENGTH",
    "OTEL_LLM_NATIVE_SDK_SPANS",
    "OTEL_LLM_PROVIDER_HOSTS",
    "OTEL_LLM_TIME_PER_OUTPUT_CHUNK",
    "OTEL_SEMCONV_STABILITY_OPT_IN",
]

OTEL_SEMCONV_STABILITY_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
"""Comma-separated opt-ins, shared with every OpenTelemetry instrumentation.

otel-llm always emits the latest GenAI conventions (there is no legacy flavour to fall back to), but,
as upstream instrumentations do, it captures message content only when this list holds
`gen_ai_latest_experimental`. Default: unset (no content, whatever the capture mode says).
"""

OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""Where prompts and completions go: `NO_CONTENT` (default), `SPAN_ONLY`, `EVENT_ONLY` or `SPAN_AND_EVENT`.

Case-insensitive. Any other value, `true` and `false` included, means `NO_CONTENT`. Honoured only
together with `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`. On spans the content is in
`gen_ai.input.messages`, `gen_ai.output.messages` and `gen_ai.system_instructions` as JSON strings;
in events it is in the `gen_ai.client.inference.operation.details` log event.
"""

OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT = "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"
"""`true` or `false`: whether to emit the `gen_ai.client.inference.operation.details` log event.

Default: follows the capture mode (true for `EVENT_ONLY` and `SPAN_AND_EVENT`, false otherwise).
"""

OTEL_LLM_CONTENT_MAX_LENGTH = "OTEL_LLM_CONTENT_MAX_LENGTH"
"""Maximum length, in characters, of each captured content attribute (a JSON string).

Longer values are cut to this length (no longer valid JSON then, which a reader can detect).
Default: 65536. A value that is not a positive integer means the default.
"""

OTEL_LLM_PROVIDER_HOSTS = "OTEL_LLM_PROVIDER_HOSTS"
"""Extra host to `gen_ai.provider.name` mappings, e.g. `localhost:8000=vllm,llm.internal=ollama`.

Comma-separated `host[:port]=provider` pairs; an entry with a port matches only that port. These win
over the built-in table (api.openai.com, api.anthropic.com, api.deepseek.com, api.groq.com,
api.mistral.ai, api.x.ai, openrouter.ai, ...). Hosts matched by neither are named after the SDK that
made the request (`openai` for the openai SDK, `anthropic` for the anthropic SDK). Default: empty.
"""

OTEL_LLM_NATIVE_SDK_SPANS = "OTEL_LLM_NATIVE_SDK_SPANS"
"""What to do when the SDK traces the call itself (anthropic's `anthropic.messages.create` span).

- `complete` (default): no second span; otel-llm adds the attributes the SDK's span lacks
  (`gen_ai.response.finish_reasons`, streaming chunk counts) while that span is still open, and
  records the metrics.
- `metrics_only`: no second span and no change to the SDK's span; metrics only.
- `duplicate`: start otel-llm's own GenAI span as a child of the SDK's span anyway (two GenAI spans
  per call; only for comparing the two).
"""

OTEL_LLM_CLIENT_METRICS = "OTEL_LLM_CLIENT_METRICS"
"""`false` to record none of the upstream client histograms in the application (spans only).

Default: `true`: `gen_ai.client.operation.duration`, `gen_ai.client.token.usage` and, for streams,
`gen_ai.client.operation.time_to_first_chunk` are recorded through the metrics API. With `false` the
application only makes spans, which carry everything those metrics are made of, and the otel-llm
collector's `genai_metrics` processor derives the same metrics from them (its default
`client_metrics: auto` does so for every service that sends none itself). That saves three to four
histogram records per call, about a third of otel-llm's overhead on a plain call
(`bench/instrumentation`). Derived metrics see only the spans that reach the collector: with a
sampler that drops spans, they undercount. `otel_llm.usage.missing` and
`otel_llm.instrumentation.errors` are counted either way. Together with
`OTEL_LLM_NATIVE_SDK_SPANS=metrics_only`, a call the SDK traces itself gets nothing from otel-llm.
"""

OTEL_LLM_TIME_PER_OUTPUT_CHUNK = "OTEL_LLM_TIME_PER_OUTPUT_CHUNK"
"""`true` to record the `gen_ai.client.operation.time_per_output_chunk` histogram.

Default: `false`; ignored when `OTEL_LLM_CLIENT_METRICS=false`. As the conventions define it: one point per chunk (SSE event) after the first, the
time since the previous one; events that arrive in the same network read are 0 s apart, and the
`[DONE]` marker is not a chunk. The gaps are kept in a small buffer during the stream (8 KiB at most)
and recorded when it ends, or every 1,024 chunks, so the per-chunk work stays a fraction of a
microsecond; but each point is still one histogram record (15 to 20 µs each in the OpenTelemetry
Python SDK), some 300 µs per 20-chunk stream, which is why it is off by default. The span always
carries the chunk count, the time to first chunk and the time of the last chunk, from which a
collector derives the mean gap per stream at no cost to the application.
"""
