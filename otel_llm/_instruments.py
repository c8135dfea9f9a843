"""The histograms and counters, built once per `instrument()` from the meter provider."""

from __future__ import annotations

from opentelemetry.metrics import Counter, Histogram, Meter

from otel_llm.conventions import metrics


class Instruments:
    """All instruments of one instrumentation run. Thread-safe (the OTel instruments are)."""

    __slots__ = ("duration", "errors", "time_per_chunk", "token_usage", "ttfc", "usage_missing")

    def __init__(self, meter: Meter) -> None:
        self.duration = _histogram(meter, metrics.GEN_AI_CLIENT_OPERATION_DURATION)
        self.token_usage = _histogram(meter, metrics.GEN_AI_CLIENT_TOKEN_USAGE)
        self.ttfc = _histogram(meter, metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK)
        self.time_per_chunk = _histogram(meter, metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK)
        self.usage_missing = _counter(meter, metrics.OTEL_LLM_USAGE_MISSING)
        self.errors = _counter(meter, metrics.OTEL_LLM_INSTRUMENTATION_ERRORS)


def _histogram(meter: Meter, name: str) -> Histogram:
    """The histogram ``name`` with the unit, description and bucket advice of the conventions."""
    spec = metrics.METRICS[name]
    assert spec.buckets is not None
    return meter.create_histogram(
        name,
        unit=spec.unit,
        description=spec.description,
        explicit_bucket_boundaries_advisory=list(spec.buckets),
    )


def _counter(meter: Meter, name: str) -> Counter:
    """The counter ``name`` with the unit and description of the conventions."""
    spec = metrics.METRICS[name]
    return meter.create_counter(name, unit=spec.unit, description=spec.description)
