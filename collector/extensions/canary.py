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
run flagged a change) with ``otel_llm.drift.signal=canary``, the endpoint's ``gen_ai.request.model``
and its name as ``otel_llm.canary.endpoint`` in the derived-metric store, and logs ``canary change
detected`` with the moved prompts, served model names and fingerprints. Every run also counts
``otel_llm.canary.probes`` (by outcome), ``otel_llm.canary.cost`` (US dollars) and
``otel_llm.canary.skipped`` (by spend-limit reason) per endpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from collector.component import CreateSettings, Factory, Host, Kind
from collector.drift.canary import Canary, CanaryConfig, EndpointReport
from collector.drift.embedders import build_embedder
from collector.logs import event
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

if TYPE_CHECKING:
    from collector.metrics import Counter, Gauge

__all__ = ["FACTORY", "CanaryExtension"]

_SIGNAL = "canary"
# The drift processor writes the same gauges with its default group_by (service.name as the resource,
# then gen_ai.request.model) and an empty endpoint, so both share one instrument.
_LABELS = (attrs.GEN_AI_REQUEST_MODEL, attrs.OTEL_LLM_DRIFT_SIGNAL, attrs.OTEL_LLM_CANARY_ENDPOINT)
_Outcome = attrs.OtelLlmCanaryProbeOutcomeValues


class CanaryExtension:
    """Runs :class:`~collector.drift.canary.Canary` every ``interval`` on its own thread."""

    def __init__(self, config: CanaryConfig, settings: CreateSettings) -> None:
        self.config = config
        self.logger = settings.logger
        self.canary = Canary(config, build_embedder(config.embedder))
        self.reports: list[EndpointReport] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gauges: dict[str, Gauge] = {}
        self._probes: Counter | None = None
        self._cost: Counter | None = None
        self._skipped: Counter | None = None

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
        expiry_s = max(3600.0, 3 * self.config.interval)
        endpoint = attrs.OTEL_LLM_CANARY_ENDPOINT
        self._probes = store.counter(
            m.OTEL_LLM_CANARY_PROBES, (endpoint, attrs.OTEL_LLM_CANARY_PROBE_OUTCOME), expiry_s=expiry_s
        )
        self._cost = store.counter(m.OTEL_LLM_CANARY_COST, (endpoint,), expiry_s=expiry_s)
        self._skipped = store.counter(
            m.OTEL_LLM_CANARY_SKIPPED, (endpoint, attrs.OTEL_LLM_CANARY_SKIP_REASON), expiry_s=expiry_s
        )
        # The drift processor shares these instruments (same labels with its default group_by); the first
        # to create one sets its limit and expiry, so both ask for values that suit both.
        for name in (m.OTEL_LLM_DRIFT_SCORE, m.OTEL_LLM_DRIFT_STATE):
            gauge = store.gauge(name, _LABELS, cardinality_limit=2000, expiry_s=expiry_s)
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
            self._count(report, now_ns)
            if report.phase == "compared" and self._gauges:
                series = ((), (models[report.endpoint], _SIGNAL, report.endpoint))
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

    def _count(self, report: EndpointReport, now_ns: int) -> None:
        """The run's probes by outcome, their cost and the skipped probes by reason, for one endpoint."""
        name = report.endpoint
        if self._probes is not None:
            outcomes = ((_Outcome.ANSWERED, report.answered), (_Outcome.FAILED, report.failed))
            self._probes.add_many([(((), (name, o)), float(n)) for o, n in outcomes if n], now_ns)
        if self._cost is not None and report.answered:
            self._cost.add(((), (name,)), report.cost_usd, now_ns)
        if self._skipped is not None and report.skip_reasons:
            self._skipped.add_many(
                [(((), (name, reason)), float(n)) for reason, n in report.skip_reasons.items()], now_ns
            )


def _create(config: CanaryConfig, settings: CreateSettings) -> CanaryExtension:
    return CanaryExtension(config, settings)


FACTORY = Factory(
    kind=Kind.EXTENSION,
    type_name="canary",
    config_type=CanaryConfig,
    create=_create,
    description="Scheduled probe prompts that flag a model changed behind an unchanged name.",
)
