"""``bench_genai``: a benchmark-only processor that aggregates per-(service, model) counts, tokens, durations.

It does what the ceiling harness's "full" mode does (decode is the receiver's; walk every span's
attributes through :meth:`collector.data.TraceBatch.genai_spans`; aggregate under a lock), without the
derived-metric store, so the benchmark can tell the walk from the store. Not registered in
``collector/``: the benchmark worker adds it to the registry.
"""

from __future__ import annotations

import threading
from typing import Any

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, TraceBatch

__all__ = ["FACTORY", "BenchGenAIProcessor"]


class BenchGenAIConfig(ComponentConfig):
    """No settings."""


class BenchGenAIProcessor:
    """Counts, token sums and duration sums per (service, request model)."""

    def __init__(self, config: BenchGenAIConfig, settings: CreateSettings) -> None:
        self._lock = threading.Lock()
        self.rows: dict[tuple[str, str], list[float]] = {}

    def start(self, host: Host) -> None:
        return

    def shutdown(self, timeout_s: float) -> None:
        return

    def process(self, batch: Batch) -> Batch | None:
        if not isinstance(batch, TraceBatch):
            return batch
        spans = batch.genai_spans()
        updates: list[tuple[tuple[str, str], int, int, float]] = []
        for span in spans:
            attrs: Any = span
            key = (attrs.service_name, attrs.request_model)
            updates.append((key, attrs.input_tokens or 0, attrs.output_tokens or 0, attrs.duration_s))
        with self._lock:
            rows = self.rows
            for key, tokens_in, tokens_out, duration in updates:
                row = rows.get(key)
                if row is None:
                    row = rows[key] = [0.0, 0.0, 0.0, 0.0]
                row[0] += 1
                row[1] += tokens_in
                row[2] += tokens_out
                row[3] += duration
        return batch


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="bench_genai",
    config_type=BenchGenAIConfig,
    create=lambda config, settings: BenchGenAIProcessor(config, settings),
    signals=frozenset({Signal.TRACES}),
    description="Benchmark only: per-(service, model) aggregation over TraceBatch.genai_spans().",
)
