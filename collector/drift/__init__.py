"""Drift detection: calibrated two-sample tests, embedders, per-group references and windows, canary probes.

- :mod:`collector.drift.statistics`: pure tests (MMD, KS, chi-squared), PSI, and the false-alarm rule.
- :mod:`collector.drift.embedders`: OpenAI-compatible endpoint, MiniLM (optional), feature hashing.
- :mod:`collector.drift.features`: what a GenAI span contributes to each signal.
- :mod:`collector.drift.monitor`: references, windows and alarm state per group (no threads, no I/O).
- :mod:`collector.drift.references`: reference files, and ``save_reference`` for the CLI.
- :mod:`collector.drift.canary`: scheduled probe prompts against model endpoints.

The ``drift`` processor (:mod:`collector.processors.drift`) and the ``canary`` extension
(:mod:`collector.extensions.canary`) wire them into the collector; ``docs/drift.md`` is the manual.
"""
