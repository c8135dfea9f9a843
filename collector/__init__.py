"""otel-llm's collector: an OTLP receiver with GenAI processors, configured like the OpenTelemetry Collector.

Run it with ``otel-llm collector --config config/collector.yaml``; see the README for every config key.
"""

__all__: list[str] = []
