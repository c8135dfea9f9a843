"""``otlp_grpc`` exporter: the new name of ``otlp`` (the Collector is renaming it too); same config."""

from __future__ import annotations

from dataclasses import replace

from collector.exporters.otlp import FACTORY as _OTLP

__all__ = ["FACTORY"]

FACTORY = replace(_OTLP, type_name="otlp_grpc", description="Alias of `otlp`: OTLP over gRPC.")
