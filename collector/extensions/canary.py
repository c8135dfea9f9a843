"""``canary`` extension: scheduled probe prompts that catch a model changed behind an unchanged name.

::

    extensions:
      canary:
        interval: 1h
        baseline_runs: 3
        budget_usd_per_day: 0.5
        endpoints:
          - {name: prod-gpt, api: openai, url: https://api.openai.com/v1, model: gpt-4o-mini,
             api_key: "${env:OPENAI_API_KEY}", input_usd_per_mtok: 0.15, output_usd_per_mtok: 0.6}
          - {name: prod-claude, api: anthropic, url: https://api.anthropic.com, model: claude-haiku-4-5,
             api_key: "${env:ANTHROPIC_API_KEY}", input_usd_per_mtok: 1, output_usd_per_mtok: 5}
    service:
      extensions: [canary]

The rule, spend limits and probes are described in :mod:`collector.drift.canary`. Each compared run
sets ``otel_llm.drift.score`` (share of prompts that moved) and ``otel_llm.drift.state`` (1 when the
run flagged a change) with ``otel_llm.drift.signal=canary`` and the endpoint's ``gen_ai.request.model``
in the derived-metric store, and logs ``canary change detected`` with the moved prompts, served model
names and fingerprints.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from collector.component import CreateSettings, Factory, Host, Kind
from collector.drift.canary import Canary, CanaryConfig, EndpointReport
from collector.drift.embedders import build_embedder
from collector.logs import event
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

__all__ = ["FACTORY", "CanaryExtension"]

_SIGNAL = "canary"
_LABELS = (attrs.GEN_AI_REQUEST_MODEL, attrs.OTEL_LLM_DRIFT_SIGNAL)


class CanaryExtension:
    """Runs :class:`~collector.drift.canary.Canary` every ``interval`` on its own thread."""

    def __init__(self, config: CanaryConfig, settings: CreateSettings) -> None:
        self.config = config
        self.logger = settings.logger
        self.canary = Canary(config, build_embedder(config.embedder))
        self.reports: list[EndpointReport] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gauges: dict[str, Any] = {}

    def start(self, host: Host) -> None:
        self._bind_store(host)
        if self._thread is not None or not self.config.endpoints:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)
        self._thread.start()

    def shutdown(self, timeout_s: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_s))
            self._thread = None

    def _bind_store(self, host: Host) -> None:
        try:
            from collector.metrics import shared_store
        except ImportError:  # the derived-metric store is optional; reports are still logged
            return
        store = shared_store(host)
        # The drift processor shares these instruments (same labels with its default group_by); the first
        # to create one sets its limit and expiry, so both ask for values that suit both.
        for name in (m.OTEL_LLM_DRIFT_SCORE, m.OTEL_LLM_DRIFT_STATE):
            gauge = store.gauge(
                name, _LABELS, cardinality_limit=2000, expiry_s=max(3600.0, 3 * self.config.interval)
            )
            if tuple(gauge.label_names) != _LABELS:
                # A drift processor grouped by other attributes created the instrument first.
                event(
                    self.logger, logging.WARNING, "canary metrics disabled: label names differ", metric=name
                )
                self._gauges = {}
                return
            self._gauges[name] = gauge

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # the scheduler must survive any fault; one line per run
                event(self.logger, logging.WARNING, "canary run failed", error=f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.config.interval)

    def run_once(self) -> list[EndpointReport]:
        """One run now, exported and logged; the scheduler calls this, so can tests."""
        reports = self.canary.run_once()
        self.reports = reports
        now_ns = time.time_ns()
        models = {endpoint.name: endpoint.model for endpoint in self.config.endpoints}
        for report in reports:
            fields = {
                "endpoint": report.endpoint,
                "phase": report.phase,
                "moved": len(report.moved),
                "served_models": ",".join(report.models),
                "fingerprints": ",".join(report.fingerprints),
                "cost_usd": round(report.cost_usd, 6),
                "errors": report.errors,
                "skipped": report.skipped,
            }
            if report.phase == "compared" and self._gauges:
                series = ((), (models[report.endpoint], _SIGNAL))
                self._gauges[m.OTEL_LLM_DRIFT_SCORE].set(series, report.moved_fraction, now_ns)
                self._gauges[m.OTEL_LLM_DRIFT_STATE].set(series, 1.0 if report.changed else 0.0, now_ns)
            if report.changed:
                event(
                    self.logger,
                    logging.WARNING,
                    "canary change detected",
                    **fields,
                    moved_prompts=" | ".join(report.moved),
                    fingerprint_changed=report.fingerprint_changed,
                )
            elif report.skipped or report.errors:
                event(self.logger, logging.INFO, "canary run incomplete", **fields)
        return reports


def _create(config: CanaryConfig, settings: CreateSettings) -> CanaryExtension:
    return CanaryExtension(config, settings)


FACTORY = Factory(
    kind=Kind.EXTENSION,
    type_name="canary",
    config_type=CanaryConfig,
    create=_create,
    description="Scheduled probe prompts that flag a model changed behind an unchanged name.",
)
