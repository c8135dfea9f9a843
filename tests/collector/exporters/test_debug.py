"""``debug`` exporter: one line per batch (basic), one line per item (detailed)."""

from __future__ import annotations

import logging

import pytest

from collector.component import ComponentId, CreateSettings, Kind, Signal
from collector.data import LogsBatch, MetricsBatch, TraceBatch
from collector.exporters.debug import DebugExporter, DebugExporterConfig
from collector.telemetry import SelfTelemetry
from tests.collector.conftest import logs_request, metrics_request, trace_request


@pytest.mark.parametrize(("verbosity", "lines"), [("basic", 3), ("normal", 3), ("detailed", 3 + 4 + 1 + 2)])
def test_debug_lines_per_verbosity(caplog: pytest.LogCaptureFixture, verbosity: str, lines: int) -> None:
    logger = logging.getLogger("test.debug")
    settings = CreateSettings(ComponentId("debug"), Kind.EXPORTER, logger, SelfTelemetry())
    exporter = DebugExporter(DebugExporterConfig(verbosity=verbosity), settings)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="test.debug"):
        exporter.consume(TraceBatch(trace_request(4, service="shop")))
        exporter.consume(MetricsBatch(metrics_request(3)))
        exporter.consume(LogsBatch(logs_request(2)))
    assert len(caplog.records) == lines
    first = caplog.records[0]
    assert first.getMessage() == "batch"
    fields = first.fields  # type: ignore[attr-defined]
    assert fields["items"] == 4 and fields["signal"] == "traces"
    if verbosity != "basic":
        assert fields["services"] == "shop"
    assert exporter.items == {Signal.TRACES: 4, Signal.METRICS: 3, Signal.LOGS: 2}
