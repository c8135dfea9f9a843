"""Attribute and metric names used by the instrumentation, in one place.

Stop-gap until `otel_llm.conventions` (generated from `semconv/`) is importable: the values equal the
upstream names (see `opentelemetry.semconv._incubating.attributes.gen_ai_attributes`); our own names
live under `otel_llm.`.
"""

from __future__ import annotations

from typing import Final

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_REASONING_LEVEL: Final = "gen_ai.request.reasoning.level"
GEN_AI_REQUEST_PREVIOUS_RESPONSE_ID: Final = "gen_ai.request.previous_response.id"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT: Final = "openai.response.system_fingerprint"
OPENAI_API_TYPE: Final = "openai.api.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"

OTEL_LLM_STREAM_CHUNK_COUNT: Final = "otel_llm.stream.chunk_count"
OTEL_LLM_STREAM_TIME_TO_LAST_CHUNK: Final = "otel_llm.stream.time_to_last_chunk"
OTEL_LLM_STREAM_ABANDONED: Final = "otel_llm.stream.abandoned"
OTEL_LLM_USAGE_MISSING_REASON: Final = "otel_llm.usage.missing"

GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS: Final = "gen_ai.client.inference.operation.details"

# Metrics.
GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
GEN_AI_CLIENT_OPERATION_DURATION_UNIT: Final = "s"
GEN_AI_CLIENT_OPERATION_DURATION_DESCRIPTION: Final = "GenAI operation duration."
GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
GEN_AI_CLIENT_TOKEN_USAGE_UNIT: Final = "{token}"
GEN_AI_CLIENT_TOKEN_USAGE_DESCRIPTION: Final = "Number of input and output tokens used."
GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK_UNIT: Final = "s"
GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK_DESCRIPTION: Final = (
    "Time to receive the first chunk in a streaming operation."
)
GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK: Final = "gen_ai.client.operation.time_per_output_chunk"
GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK_UNIT: Final = "s"
GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK_DESCRIPTION: Final = (
    "Time between consecutive chunks after the first in a streaming operation."
)
OTEL_LLM_USAGE_MISSING: Final = "otel_llm.usage.missing"
OTEL_LLM_USAGE_MISSING_UNIT: Final = "{call}"
OTEL_LLM_USAGE_MISSING_DESCRIPTION: Final = "GenAI calls whose response carried no token usage."
OTEL_LLM_INSTRUMENTATION_ERRORS: Final = "otel_llm.instrumentation.errors"
OTEL_LLM_INSTRUMENTATION_ERRORS_UNIT: Final = "{error}"
OTEL_LLM_INSTRUMENTATION_ERRORS_DESCRIPTION: Final = "Exceptions raised and swallowed inside otel-llm itself."

_DUR = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOK = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
GEN_AI_CLIENT_OPERATION_DURATION_BUCKETS: Final[tuple[float, ...]] = _DUR
GEN_AI_CLIENT_TOKEN_USAGE_BUCKETS: Final[tuple[float, ...]] = _TOK
GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK_BUCKETS: Final[tuple[float, ...]] = _DUR
GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK_BUCKETS: Final[tuple[float, ...]] = _DUR
