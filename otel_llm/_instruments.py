"""The histograms and counters, built once per `instrument()` from the meter provider."""

from __future__ import annotations

from opentelemetry.metrics import Meter

from otel_llm.conventions import metrics


class Instruments:
    """All instruments of one instrumentation run. Thread-safe (the OTel instruments are)."""

    __slots__ = ("duration", "errors", "time_per_chunk", "token_usage", "ttfc", "usage_missing")

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            metrics.GEN_AI_CLIENT_OPERATION_DURATION,
            unit=metrics.GEN_AI_CLIENT_OPERATION_DURATION_UNIT,
            description=metrics.GEN_AI_CLIENT_OPERATION_DURATION_DESCRIPTION,
            explicit_bucket_boundaries_advisory=list(metrics.GEN_AI_CLIENT_OPERATION_DURATION_BUCKETS),
        )
        self.token_usage = meter.create_histogram(
            metrics.GEN_AI_CLIENT_TOKEN_USAGE,
            unit=metrics.GEN_AI_CLIENT_TOKEN_USAGE_UNIT,
            description=metrics.GEN_AI_CLIENT_TOKEN_USAGE_DESCRIPTION,
            explicit_bucket_boundaries_advisory=list(metrics.GEN_AI_CLIENT_TOKEN_USAGE_BUCKETS),
        )
        self.ttfc = meter.create_histogram(
            metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
            unit=metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK_UNIT,
            description=metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK_DESCRIPTION,
            explicit_bucket_boundaries_advisory=list(
                metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK_BUCKETS
            ),
        )
        self.time_per_chunk = meter.create_histogram(
            metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
            unit=metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK_UNIT,
            description=metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK_DESCRIPTION,
            explicit_bucket_boundaries_advisory=list(
                metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK_BUCKETS
            ),
        )
        self.usage_missing = meter.create_counter(
            metrics.OTEL_LLM_USAGE_MISSING,
            unit=metrics.OTEL_LLM_USAGE_MISSING_UNIT,
            description=metrics.OTEL_LLM_USAGE_MISSING_DESCRIPTION,
        )
        self.errors = meter.create_counter(
            metrics.OTEL_LLM_INSTRUMENTATION_ERRORS,
            unit=metrics.OTEL_LLM_INSTRUMENTATION_ERRORS_UNIT,
            description=metrics.OTEL_LLM_INSTRUMENTATION_ERRORS_DESCRIPTION,
        )
