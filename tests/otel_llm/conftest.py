"""Fixtures for the instrumentation tests: a cassette server and fresh OpenTelemetry SDK providers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm import LLMInstrumentor
from otel_llm import environment_variables as env
from tests.fakes.cassette_server import CassetteServer
from tests.otel_llm._sdk import ANTHROPIC_MAJOR

ALL_ENV = [getattr(env, name) for name in env.__all__]


def pytest_configure(config: pytest.Config) -> None:
    if ANTHROPIC_MAJOR < 1:
        # anthropic 0.x warns that the models named in the recordings are deprecated: the SDK's
        # notice to its user, not something the instrumentation does.
        config.addinivalue_line(
            "filterwarnings", r"ignore:The model '[^']*' is deprecated:DeprecationWarning"
        )


@pytest.fixture(scope="session")
def server() -> Iterator[CassetteServer]:
    with CassetteServer() as s:
        yield s


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    spans_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    log_exporter: InMemoryLogRecordExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_exporter.get_finished_spans())

    def genai_spans(self) -> list[ReadableSpan]:
        return [
            s for s in self.spans() if s.instrumentation_scope and s.instrumentation_scope.name == "otel_llm"
        ]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """name -> [(attributes, point)] of every data point collected now."""
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.metric_reader.get_metrics_data()
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        out.setdefault(metric.name, []).append((dict(point.attributes or {}), point))
        return out

    def logs(self) -> list[Any]:
        return list(self.log_exporter.get_finished_logs())


def make_telemetry() -> Telemetry:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    logs = InMemoryLogRecordExporter()
    lp = LoggerProvider()
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    return Telemetry(tp, mp, lp, spans, reader, logs)


@pytest.fixture
def instrument(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Telemetry]]:
    """`instrument(**env)`: fresh providers, the given environment, LLMInstrumentor on; off at teardown."""
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")
    instrumentor = LLMInstrumentor()
    made: list[Telemetry] = []

    def start(**environ: str) -> Telemetry:
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        t = make_telemetry()
        instrumentor.instrument(
            tracer_provider=t.tracer_provider,
            meter_provider=t.meter_provider,
            logger_provider=t.logger_provider,
        )
        made.append(t)
        return t

    yield start
    instrumentor.uninstrument()
    for t in made:
        t.tracer_provider.shutdown()
        t.meter_provider.shutdown()
        t.logger_provider.shutdown()


@pytest.fixture
def telemetry(instrument: Callable[..., Telemetry]) -> Telemetry:
    return instrument()
