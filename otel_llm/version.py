"""The otel-llm version, as the tracer and meter scope version."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
