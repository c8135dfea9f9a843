"""Anomaly detection and alerting: signals per group, detectors, rules as code, notifiers, health score.

The ``anomaly`` processor (:mod:`collector.processors.anomaly`) ties these together; the modules are
usable on their own for replays (``otel-llm alerts test``) and benchmarks (``bench/alerts``).
Reference: ``docs/alerting.md``.
"""
