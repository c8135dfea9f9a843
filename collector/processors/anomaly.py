"""``anomaly``: alert rules evaluated per group on signals derived from GenAI spans; notifications; health.

Put it in a traces pipeline after ``cost`` (with ``span_attributes: true``, so spans carry their cost)
and after any processor whose metrics it reads (``drift``). Data passes through unchanged.

- **Signals** (:mod:`collector.alerting.signals`) are aggregated per ``group_by`` values in buckets of
  ``evaluation_interval`` of *data time*: with ``time_source: span_end`` the span end time drives the
  clock (a recorded day replays in seconds; while no data arrives the clock keeps moving at wall
  speed), with ``wall`` the collector's clock does.
- **Rules** are read from ``rules_dir`` at start (a broken file fails start-up) and reloaded when a
  file changes (a broken reload is refused and logged; the running rules stay).
- **Notifications** go to Alertmanager, PagerDuty, Slack and webhooks on their own threads
  (:mod:`collector.alerting.notifiers`).
- **Metrics** into the derived-metric store: ``otel_llm.alert.state`` (1 per pending or firing alert,
  like Prometheus' ``ALERTS``), ``otel_llm.health.score`` per service and model, and
  ``otel_llm.alert.notifications`` per notifier and outcome (from the routes' counts, every tick).
- **Audit**: every transition and every reload is one JSON log line with ``changed_by``.
- **State** (optional ``state_file``): open alerts are saved atomically on every transition and at
  shutdown and restored at start, so a restart neither re-pages a firing alert nor loses its
  resolution (:mod:`collector.alerting.state`).

Thread safety: ``process`` may run on several receiver threads; one lock guards the evaluator.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from collector.alerting.engine import AlertState, Evaluator, Transition, label_name
from collector.alerting.health import HealthSettings, component_scores, health_score
from collector.alerting.notifiers import (
    AlertmanagerNotifier,
    Delivery,
    Notification,
    Notifier,
    PagerDutyNotifier,
    Route,
    SlackNotifier,
    WebhookNotifier,
    notification_from,
    rfc3339,
)
from collector.alerting.rules import RuleConfig, RuleWatcher, file_owners, load_rules
from collector.alerting.signals import GroupKey, Observation, SignalValue, compute
from collector.alerting.state import load_state, save_state
from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, TraceBatch
from collector.durations import Duration
from collector.errors import ComponentError
from collector.genai.spans import GenAISpan, any_value
from collector.logs import event
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import events as ev
from otel_llm.conventions import metrics as m

__all__ = ["FACTORY", "AnomalyProcessor", "AnomalyProcessorConfig"]

_SERVICE = "service.name"
_Outcome = attrs.OtelLlmAlertNotificationOutcomeValues
#: ``otel_llm.alert.notification.outcome`` -> the :class:`RouteStats` field that counts it.
_OUTCOMES = {
    _Outcome.SENT: "sent",
    _Outcome.FAILED: "failed",
    _Outcome.DROPPED: "dropped",
    _Outcome.DEDUPLICATED: "deduplicated",
}
_MODEL = attrs.GEN_AI_REQUEST_MODEL
# Operations whose spans are model calls; agent, tool and workflow spans would mix their own latency in.
_MODEL_CALLS = frozenset(
    {
        attrs.GenAiOperationNameValues.CHAT,
        attrs.GenAiOperationNameValues.GENERATE_CONTENT,
        attrs.GenAiOperationNameValues.TEXT_COMPLETION,
        attrs.GenAiOperationNameValues.EMBEDDINGS,
        "",
    }
)


class AlertmanagerSettings(ComponentConfig):
    """``alertmanager``: the primary route."""

    url: str = Field(description="Base URL, e.g. `http://127.0.0.1:9093`; alerts go to `/api/v2/alerts`.")
    resend_interval: Duration = Field(
        60.0,
        gt=0,
        description="Re-send open alerts this often; they expire after 4 intervals unless re-sent.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers (auth).")


class PagerDutySettings(ComponentConfig):
    """``pagerduty``: Events API v2."""

    routing_key: str = Field(min_length=1, description="Integration (routing) key of the service.")
    url: str = Field("https://events.pagerduty.com/v2/enqueue", description="Events API endpoint.")
    source: str = Field("otel-llm", description="`payload.source` when the group has no service name.")


class SlackSettings(ComponentConfig):
    """``slack``: an incoming webhook."""

    webhook_url: str = Field(min_length=1, description="The incoming-webhook URL Slack gave you.")


class WebhookSettings(ComponentConfig):
    """One entry of ``webhooks``."""

    url: str = Field(min_length=1, description="Where to POST the JSON alert.")
    secret: str = Field("", description="HMAC-SHA256 signing secret; empty: unsigned.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")


class DeliverySettings(ComponentConfig):
    """``delivery``: queue, retry and timeout of every route."""

    queue_size: int = Field(1000, ge=1, description="Notifications waiting per route before drops.")
    max_attempts: int = Field(5, ge=1, description="Tries per notification (first one included).")
    initial_backoff: Duration = Field(0.5, description="Wait before the first retry; doubles each time.")
    max_backoff: Duration = Field(30.0, description="Longest wait between retries (and for Retry-After).")
    timeout: Duration = Field(5.0, gt=0, description="HTTP timeout per request.")


class AnomalyProcessorConfig(ComponentConfig):
    """``processors::anomaly``."""

    rules_dir: str = Field("config/alerts", description="Directory of `*.yaml` rule files.")
    evaluation_interval: Duration = Field(
        60.0, gt=0, description="How often rules are evaluated (data time)."
    )
    group_by: list[str] = Field(
        default_factory=lambda: [_SERVICE, _MODEL],
        min_length=1,
        description="Dimensions rules are evaluated per (span or resource attributes).",
    )
    time_source: Literal["span_end", "wall"] = Field(
        "span_end", description="`span_end`: data time from span end times; `wall`: the collector's clock."
    )
    reload_interval: Duration = Field(
        10.0, description="How often `rules_dir` is checked for changes (0: never reload)."
    )
    group_ttl: Duration = Field(
        3600.0, gt=0, description="Forget a group (and close its alerts) after this idle time."
    )
    max_groups: int = Field(
        1000, ge=1, description="Groups tracked; spans of further groups are not evaluated."
    )
    generator_url: str = Field("", description="Link sent with every alert (a dashboard); empty: none.")
    prometheus_rules_file: str | None = Field(
        None, description="Write the rules PromQL can express to this file at start and on every reload."
    )
    alertmanager: AlertmanagerSettings | None = Field(
        None, description="Alertmanager route; none by default."
    )
    pagerduty: PagerDutySettings | None = Field(None, description="PagerDuty route; none by default.")
    slack: SlackSettings | None = Field(None, description="Slack route; none by default.")
    webhooks: list[WebhookSettings] = Field(default_factory=list, description="Signed webhook routes.")
    delivery: DeliverySettings = Field(
        default_factory=DeliverySettings, description="Queue, retry and timeout of every route."
    )
    health: HealthSettings = Field(
        default_factory=HealthSettings, description="The health score per service and model."
    )
    state_file: str | None = Field(
        None,
        description="JSON file of open alerts, written atomically on every transition and at shutdown, "
        "read at start: an alert firing before a restart stays firing without a new page. None: memory only.",
    )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        rules, found = load_rules(self.rules_dir)
        out.extend(("rules_dir", problem) for problem in found)
        for rule in rules.rules:
            out.extend(
                ("rules_dir", problem) for problem in rule_problems(rule, self, rules.sources[rule.name])
            )
        for index, name in enumerate(self.group_by):
            if name in self.group_by[:index]:
                out.append((f"group_by::{index}", f"{name!r} is listed twice"))
        if self.state_file is not None:
            parent = Path(self.state_file).parent
            if not parent.is_dir():
                out.append(("state_file", f"no such directory: {parent}"))
        return out


def rule_problems(rule: RuleConfig, config: AnomalyProcessorConfig, source: str) -> list[str]:
    """Problems of a valid rule in the context of this processor's settings."""
    out: list[str] = []
    if rule.group_by is not None:
        extra = [d for d in rule.group_by if d not in config.group_by]
        if extra:
            out.append(
                f"{source}: rule {rule.name}: group_by {extra} not in the processor's group_by {config.group_by}"
            )
    if rule.window is not None:
        ratio = rule.window / config.evaluation_interval
        if abs(ratio - round(ratio)) > 1e-6 or ratio < 1:
            out.append(f"{source}: rule {rule.name}: window must be a multiple of evaluation_interval")
    return out


def _dimension(name: str) -> Callable[[GenAISpan], str]:
    if name == _SERVICE:
        return lambda s: s.service_name
    if name == _MODEL:
        return lambda s: s.request_model
    if name in (attrs.GEN_AI_PROVIDER_NAME, attrs.GEN_AI_SYSTEM):
        return lambda s: s.provider
    if name == attrs.GEN_AI_OPERATION_NAME:
        return lambda s: s.operation

    def read(span: GenAISpan) -> str:
        value = span.attribute(name)
        return "" if value is None or isinstance(value, list | dict) else str(value)

    return read


def observation(span: GenAISpan) -> Observation:
    """What the anomaly signals take from one GenAI span."""
    tokens: int | None = None
    if span.input_tokens is not None or span.output_tokens is not None:
        tokens = (span.input_tokens or 0) + (span.output_tokens or 0)
    quality: list[float] = []
    direct = span.attributes.get(attrs.GEN_AI_EVALUATION_SCORE_VALUE)
    if direct is not None:
        value = any_value(direct)
        if isinstance(value, int | float) and not isinstance(value, bool):
            quality.append(float(value))
    for item in span.span.events:
        if item.name == ev.GEN_AI_EVALUATION_RESULT:
            for kv in item.attributes:
                if kv.key == attrs.GEN_AI_EVALUATION_SCORE_VALUE:
                    value = any_value(kv.value)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        quality.append(float(value))
    thumbs: tuple[float, ...] = ()
    if span.attribute(attrs.OTEL_LLM_FEEDBACK_KIND) == attrs.OtelLlmFeedbackKindValues.THUMBS:
        value = span.attribute(attrs.OTEL_LLM_FEEDBACK_VALUE)
        if isinstance(value, int | float) and not isinstance(value, bool):
            thumbs = (float(value),)
    return Observation(
        duration_s=span.duration_s,
        is_error=span.is_error,
        error_type=span.error_type,
        ttft_s=span.time_to_first_chunk_s,
        tokens=tokens,
        cost=span.cost_amount,
        quality=tuple(quality),
        thumbs=thumbs,
    )


class _StoreSignals:
    """Reads ``drift_state``, ``quality_score`` and ``thumbs_down_rate`` from the derived-metric store.

    One snapshot of an instrument serves every group of one evaluation (cached per window end), and
    a group's result is cached per window end too, so several rules and the health score on the same
    signal see the same value (the quality mean is a difference between evaluations).
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        self._previous: dict[tuple[Any, ...], tuple[float, int, float]] = {}
        self._last_at = math.nan
        self._points_at: dict[str, tuple[float, list[tuple[dict[str, str], Any]]]] = {}
        self._results: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, SignalValue | None]] = {}

    def _points(self, name: str, at: float) -> list[tuple[dict[str, str], Any]]:
        cached = self._points_at.get(name)
        if cached is not None and cached[0] == at:
            return cached[1]
        store = self.host.shared.get("collector.metrics.store")
        out: list[tuple[dict[str, str], Any]] = []
        if store is not None:
            now = time.time_ns()
            for instrument in store.instruments():
                if instrument.name != name:
                    continue
                for point in instrument.snapshot(now).points:
                    labels = {label_name(k): str(v) for k, v in point.attributes}
                    labels.update({label_name(k): v for k, v in store.resource_attributes(point.resource)})
                    out.append((labels, point))
        self._points_at[name] = (at, out)
        return out

    def read(self, signal: str, group: Mapping[str, str], at: float) -> SignalValue | None:
        key = (signal, tuple(sorted(group.items())))
        cached = self._results.get(key)
        if cached is not None and cached[0] == at:
            return cached[1]
        if at != self._last_at:
            # A new evaluation: forget groups not read for an hour (expired groups never come back).
            self._last_at = at
            self._results = {k: v for k, v in self._results.items() if v[0] >= at - 3600}
            self._previous = {k: v for k, v in self._previous.items() if v[2] >= at - 3600}
        result = self._read(signal, group, at)
        self._results[key] = (at, result)
        return result

    def _read(self, signal: str, group: Mapping[str, str], at: float) -> SignalValue | None:
        def matches(labels: Mapping[str, str]) -> bool:
            return all(labels.get(k, v) == v for k, v in group.items())

        if signal == "drift_state":
            values = [p.value for labels, p in self._points(m.OTEL_LLM_DRIFT_STATE, at) if matches(labels)]
            return SignalValue(max(values), 1) if values else None
        if signal == "quality_score":
            total, count = 0.0, 0
            for labels, point in self._points(m.OTEL_LLM_EVALUATION_SCORE, at):
                if matches(labels):
                    total += point.total
                    count += point.count
            return self._delta(signal, group, total, count, at)
        if signal == "thumbs_down_rate":
            kind = label_name(attrs.OTEL_LLM_FEEDBACK_KIND)
            polarity = label_name(attrs.OTEL_LLM_FEEDBACK_POLARITY)
            down, thumbs = 0.0, 0
            for labels, point in self._points(m.OTEL_LLM_FEEDBACK, at):
                if labels.get(kind) == attrs.OtelLlmFeedbackKindValues.THUMBS and matches(labels):
                    thumbs += int(point.value)
                    negative = labels.get(polarity) == attrs.OtelLlmFeedbackPolarityValues.NEGATIVE
                    down += point.value if negative else 0.0
            return self._delta(signal, group, down, thumbs, at)
        return None

    def _delta(
        self, signal: str, group: Mapping[str, str], total: float, count: int, at: float
    ) -> SignalValue | None:
        """Mean of what arrived since the previous read of this group (the store's series are cumulative)."""
        key = (signal, *sorted(group.items()))
        before = self._previous.get(key)
        self._previous[key] = (total, count, at)
        if before is None or count <= before[1]:
            return None
        return SignalValue((total - before[0]) / (count - before[1]), count - before[1])


class AnomalyProcessor:
    """Evaluates alert rules on GenAI spans; see the module docstring."""

    def __init__(
        self, config: AnomalyProcessorConfig, settings: CreateSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.settings = settings
        self.logger = settings.logger
        self.clock = clock
        self._readers = [_dimension(name) for name in config.group_by]
        self._labels = [label_name(name) for name in config.group_by]
        self._lock = threading.Lock()
        self.evaluator: Evaluator | None = None
        self.routes: list[Route] = []
        self.watcher: RuleWatcher | None = None
        self.transitions: list[Transition] = []  # the latest ones, for tests and `otel-llm health`
        self.health: dict[GroupKey, float] = {}
        self._store: Any = None
        self._alert_gauge: Any = None
        self._health_gauge: Any = None
        self._notifications: Any = None
        # Route counts already added to otel_llm.alert.notifications, per route (routes are rebuilt on start).
        self._counted: list[dict[str, int]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._offset: float | None = None  # data time minus wall time at the last span
        self._last_span_wall = 0.0
        self._next_reload = 0.0
        self._health_at = -1
        # Last firing notification per fingerprint (what the state file records as sent).
        self._notified: dict[str, Notification] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        if self._thread is not None:
            return
        c = self.config
        rules, problems = load_rules(c.rules_dir)
        for rule in rules.rules:
            problems.extend(rule_problems(rule, c, rules.sources[rule.name]))
        if problems:
            raise ComponentError(
                f"processors::{self.settings.id}: invalid alert rules: " + "; ".join(problems)
            )
        self.evaluator = Evaluator(
            interval_s=c.evaluation_interval,
            group_by=c.group_by,
            rules=rules.rules,
            store=_StoreSignals(host),
            group_ttl_s=c.group_ttl,
            max_groups=c.max_groups,
            min_window_s=c.health.window if c.health.enabled else 0.0,
        )
        self._bind_store(host)
        self.routes = self._routes()
        self._counted = [dict.fromkeys(_OUTCOMES, -1) for _ in self.routes]
        self._count_notifications()  # zero series from the start, so rate() and increase() work at once
        self._load_state()
        for route in self.routes:
            route.start()
        if c.reload_interval > 0:
            self.watcher = RuleWatcher(c.rules_dir)
        self._export_rules(rules.rules)
        event(
            self.logger,
            logging.INFO,
            "alert rules loaded",
            rules=[rule.name for rule in rules.rules],
            rules_dir=c.rules_dir,
            changed_by="start-up",
        )
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._tick_loop, name=f"anomaly-{self.settings.id}", daemon=True
        )
        self._thread.start()

    def shutdown(self, timeout_s: float) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout_s)
        self._thread = None
        for route in self.routes:
            route.shutdown(timeout_s)
        with self._lock:
            self._count_notifications()
            self._save_state()
        for route in self.routes:
            stats = route.stats
            # Open alerts stay open on purpose: Alertmanager expires them at endsAt, PagerDuty keeps
            # the incident until the next resolution, which a restarted collector sends.
            event(
                self.logger,
                logging.INFO,
                "alert route stopped",
                notifier=route.notifier.name,
                sent=stats.sent,
                failed=stats.failed,
                retries=stats.retries,
                dropped=stats.dropped,
                deduplicated=stats.deduplicated,
                still_open=len(route.open_alerts()),
            )

    def _bind_store(self, host: Host) -> None:
        try:
            from collector.metrics import shared_store
        except ImportError:  # the store is optional: the processor still alerts without it
            return
        self._store = shared_store(host)
        dims = [d for d in self.config.group_by if d != _SERVICE]
        # Series are refreshed every tick while open; a closed alert's series expires soon after.
        self._alert_gauge = self._store.gauge(
            m.OTEL_LLM_ALERT_STATE,
            (attrs.OTEL_LLM_ALERT_RULE, attrs.OTEL_LLM_ALERT_SEVERITY, attrs.OTEL_LLM_ALERT_STATE, *dims),
            cardinality_limit=10_000,
            expiry_s=30.0,
        )
        self._health_gauge = self._store.gauge(
            m.OTEL_LLM_HEALTH_SCORE,
            [d for d in (_MODEL,) if d in self.config.group_by],
            cardinality_limit=self.config.max_groups,
            expiry_s=max(600.0, 3 * self.config.evaluation_interval),
        )
        # A handful of series (notifier kinds x outcomes) that must never expire: a counter that
        # restarts after an idle spell would hide the failures an alert on it is meant to catch.
        self._notifications = self._store.counter(
            m.OTEL_LLM_ALERT_NOTIFICATIONS,
            (attrs.OTEL_LLM_ALERT_NOTIFIER, attrs.OTEL_LLM_ALERT_NOTIFICATION_OUTCOME),
            expiry_s=0.0,
        )

    def _count_notifications(self) -> None:
        """Add what the routes counted since the last call to ``otel_llm.alert.notifications``."""
        if self._notifications is None:
            return
        added: dict[Any, float] = {}
        for route, counted in zip(self.routes, self._counted, strict=True):
            kind = route.notifier.name.partition("/")[0]  # webhook/0, webhook/1 -> webhook
            for outcome, field_name in _OUTCOMES.items():
                now_count = getattr(route.stats, field_name)
                before = counted[outcome]
                if now_count > before:
                    counted[outcome] = now_count
                    key = ((), (kind, outcome))
                    added[key] = added.get(key, 0.0) + float(now_count - max(before, 0))
        if added:
            self._notifications.add_many(added.items(), time.time_ns())

    def _routes(self) -> list[Route]:
        c = self.config
        d = c.delivery
        delivery = Delivery(d.queue_size, d.max_attempts, d.initial_backoff, d.max_backoff, d.timeout)
        found: list[tuple[Notifier, float]] = []
        if c.alertmanager is not None:
            am = c.alertmanager
            found.append((AlertmanagerNotifier(am.url, am.resend_interval, am.headers), am.resend_interval))
        if c.pagerduty is not None:
            found.append(
                (PagerDutyNotifier(c.pagerduty.routing_key, c.pagerduty.url, c.pagerduty.source), 0.0)
            )
        if c.slack is not None:
            found.append((SlackNotifier(c.slack.webhook_url), 0.0))
        for index, hook in enumerate(c.webhooks):
            found.append((WebhookNotifier(hook.url, hook.secret, hook.headers, name=f"webhook/{index}"), 0.0))
        return [
            Route(notifier, delivery, self.logger, resend_interval_s=resend) for notifier, resend in found
        ]

    # -- data path ---------------------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch | None:
        if not isinstance(batch, TraceBatch) or self.evaluator is None:
            return batch
        spans = [s for s in batch.genai_spans() if s.operation in _MODEL_CALLS]
        if not spans:
            return batch
        readers = self._readers
        wall = self.clock()
        items = []
        for span in spans:
            t = span.span.end_time_unix_nano / 1e9 if self.config.time_source == "span_end" else wall
            items.append((t, tuple(read(span) for read in readers), observation(span)))
        with self._lock:
            out: list[Transition] = []
            for t, key, obs in items:
                out.extend(self.evaluator.observe(t, key, obs))
                self._offset = t - wall
            self._last_span_wall = wall
            self._after_evaluation(out)
        return batch

    def advance(self, t: float) -> list[Transition]:
        """Move data time to ``t`` without data (tests, replays, idle ticks); returns the transitions."""
        assert self.evaluator is not None
        with self._lock:
            out = self.evaluator.advance(t)
            self._after_evaluation(out)
        return out

    def _after_evaluation(self, out: list[Transition]) -> None:
        evaluator = self.evaluator
        assert evaluator is not None
        if evaluator.evaluations != self._health_at:
            self._health_at = evaluator.evaluations
            self._compute_health()
        for transition in out:
            self._audit(transition, "evaluation")
            self._notify(transition)
        if out:
            self.transitions = (self.transitions + out)[-1000:]
            self._publish()
            self._save_state()

    def _notify(self, transition: Transition) -> None:
        """Send the transition's notification (if any) to every route; remember what fired."""
        notification = notification_from(transition, self.config.generator_url)
        if notification is None:
            return
        if notification.status == "firing":
            self._notified[notification.fingerprint] = notification
        else:
            self._notified.pop(notification.fingerprint, None)
        for route in self.routes:
            route.submit(notification)

    # -- state file --------------------------------------------------------------------------------

    def _save_state(self) -> None:
        """Write the open alerts to ``state_file`` (under the lock); a failure is logged, not raised."""
        path = self.config.state_file
        if path is None or self.evaluator is None:
            return
        at = self.evaluator.aggregator.open_start
        try:
            save_state(
                path, self.evaluator.open_alerts(), self._notified, at if at is not None else self.clock()
            )
        except OSError as exc:
            event(self.logger, logging.ERROR, "alert state not saved", path=path, error=str(exc))

    def _load_state(self) -> None:
        """Restore open alerts from ``state_file``: no page for what fired before, a resolve later.

        Alerts of rules that are gone (or regrouped) while the collector was down are resolved now.
        An unreadable file is logged and ignored: alerting starts from nothing, as without the file.
        """
        path = self.config.state_file
        if path is None or self.evaluator is None:
            return
        try:
            saved = load_state(path)
        except (OSError, ValueError) as exc:
            event(self.logger, logging.ERROR, "alert state not restored", path=path, error=str(exc))
            return
        if saved is None:
            return
        at = saved.saved_at if math.isfinite(saved.saved_at) else self.clock()
        with self._lock:
            dropped = self.evaluator.restore(saved.alerts, at)
            gone = {alert.fingerprint for alert in dropped}
            for fingerprint, notification in saved.notifications.items():
                for route in self.routes:
                    route.restore(notification)
                if fingerprint in gone:
                    resolved = replace(notification, status="resolved", ends_at=self.clock())
                    for route in self.routes:
                        route.submit(resolved)
                else:
                    self._notified[fingerprint] = notification
            self._save_state()
            self._publish()
        event(
            self.logger,
            logging.INFO,
            "alert state restored",
            path=path,
            restored=[f"{a.rule} {dict(a.labels)} {a.state.value}" for a in saved.alerts if a not in dropped],
            resolved_rule_gone=sorted({f"{a.rule} {dict(a.labels)}" for a in dropped}),
            changed_by="start-up",
        )

    def _audit(self, transition: Transition, cause: str) -> None:
        event(
            self.logger,
            logging.WARNING if transition.state is AlertState.FIRING else logging.INFO,
            "alert transition",
            rule=transition.rule,
            group=dict(transition.group),
            previous=transition.previous.value,
            state=transition.state.value,
            severity=transition.severity,
            at=rfc3339(transition.at) if math.isfinite(transition.at) else None,
            value=transition.value if math.isfinite(transition.value) else None,
            score=transition.score if math.isfinite(transition.score) else None,
            baseline=transition.baseline if math.isfinite(transition.baseline) else None,
            reason=transition.reason,
            fingerprint=transition.fingerprint,
            changed_by=f"processor {self.settings.id} ({cause})",
        )

    # -- health ------------------------------------------------------------------------------------

    def _compute_health(self) -> None:
        settings = self.config.health
        evaluator = self.evaluator
        if not settings.enabled or evaluator is None or evaluator.aggregator.open_start is None:
            return
        end = evaluator.aggregator.open_start
        positions = [i for i, d in enumerate(self.config.group_by) if d in (_SERVICE, _MODEL)]
        aggregator = evaluator.aggregator
        merged = aggregator.rolled_up(
            aggregator.group_keys(), positions, end, settings.window, skip_empty=True
        )
        labels = [self._labels[i] for i in positions]
        scores: dict[GroupKey, float] = {}
        for key, bucket in merged.items():
            if bucket.count < settings.min_samples:
                continue

            def value(signal: str, bucket: Any = bucket) -> float | None:
                found = compute(signal, bucket, settings.window)
                return found.value if found is not None else None

            drift = None
            if evaluator.store is not None:
                read = evaluator.store.read("drift_state", dict(zip(labels, key, strict=True)), end)
                drift = read.value if read is not None else None
            components = component_scores(
                settings,
                error_rate=value("error_rate"),
                latency_p95_s=value("latency_p95_s"),
                quality=value("quality_score"),
                drift=drift,
            )
            score = health_score(settings, components)
            if score is not None:
                scores[key] = score
        self.health = scores

    # -- publishing --------------------------------------------------------------------------------

    def _series(self, labels: Mapping[str, str], extra: tuple[str, ...], dims: list[str]) -> Any:
        service = labels.get(label_name(_SERVICE))
        resource: tuple[str, ...] = ()
        if service is not None and self._store is not None:
            resource = (service,)
            self._store.register_resource(resource, ((_SERVICE, service),))
        return (resource, (*extra, *(labels.get(label_name(d), "") for d in dims)))

    def _publish(self) -> None:
        """Refresh the alert-state and health series (called under the lock)."""
        if self._store is None or self.evaluator is None:
            return
        now_ns = time.time_ns()
        dims = [d for d in self.config.group_by if d != _SERVICE]
        for rule, labels, state, severity in self.evaluator.firing():
            key = self._series(labels, (rule, severity, state.value), dims)
            self._alert_gauge.set(key, 1.0, now_ns)
        positions = [i for i, d in enumerate(self.config.group_by) if d in (_SERVICE, _MODEL)]
        names = [self._labels[i] for i in positions]
        model_dims = [d for d in (_MODEL,) if d in self.config.group_by]
        for group, score in self.health.items():
            key = self._series(dict(zip(names, group, strict=True)), (), model_dims)
            self._health_gauge.set(key, score, now_ns)

    # -- background: reload, idle time, refresh ----------------------------------------------------

    def _tick_loop(self) -> None:
        period = min(1.0, self.config.evaluation_interval)
        while not self._stop.wait(period):
            try:
                self.tick()
            except Exception:  # the loop must survive a bug in one tick; it is logged with the trace
                self.logger.exception("anomaly tick failed")

    def tick(self) -> None:
        """One background round: reload rules if changed, move idle data time on, refresh metrics."""
        wall = self.clock()
        c = self.config
        if self.watcher is not None and wall >= self._next_reload:
            self._next_reload = wall + c.reload_interval
            self.reload()
        with self._lock:
            out: list[Transition] = []
            if self.evaluator is not None:
                if c.time_source == "wall":
                    out = self.evaluator.advance(wall)
                elif self._offset is not None and wall - self._last_span_wall > c.evaluation_interval:
                    # No spans for a while: let data time run on at wall speed so windows close and
                    # alerts resolve (or fire on a traffic drop) without waiting for the next span.
                    out = self.evaluator.advance(wall + self._offset)
            self._after_evaluation(out)
            self._publish()
            self._count_notifications()

    def reload(self, changed_by: str = "file watch") -> bool:
        """Reload the rules if the directory changed; ``True`` when new rules were applied."""
        if self.watcher is None or self.evaluator is None:
            return False
        changed = self.watcher.changed()
        if changed is None:
            return False
        rules, problems = load_rules(self.config.rules_dir)
        for rule in rules.rules:
            problems.extend(rule_problems(rule, self.config, rules.sources[rule.name]))
        owners = file_owners(Path(self.config.rules_dir), changed)
        if problems:
            event(
                self.logger,
                logging.ERROR,
                "alert rules reload refused",
                rules_dir=self.config.rules_dir,
                files=changed,
                owners=owners,
                problems=problems,
                changed_by=changed_by,
            )
            return False
        with self._lock:
            before = {rule.name: rule for rule in self.evaluator.rules}
            after = rules.by_name()
            at = self.evaluator.aggregator.open_start
            closed = self.evaluator.set_rules(rules.rules, at if at is not None else math.nan)
            for transition in closed:
                self._audit(transition, "rule reload")
                self._notify(transition)
            if closed:
                self._save_state()
        event(
            self.logger,
            logging.WARNING,
            "alert rules reloaded",
            rules_dir=self.config.rules_dir,
            files=changed,
            owners=owners,
            added=sorted(after.keys() - before.keys()),
            removed=sorted(before.keys() - after.keys()),
            changed=sorted(name for name in after.keys() & before.keys() if after[name] != before[name]),
            changed_by=changed_by,
        )
        self._export_rules(rules.rules)
        return True

    def _export_rules(self, rules: tuple[RuleConfig, ...]) -> None:
        if self.config.prometheus_rules_file is None:
            return
        from collector.alerting.promrules import write_prometheus_rules

        try:
            skipped = write_prometheus_rules(
                self.config.prometheus_rules_file,
                rules,
                self.config.group_by,
                self.config.evaluation_interval,
            )
        except OSError as exc:
            event(self.logger, logging.WARNING, "prometheus rules not written", error=str(exc))
            return
        event(
            self.logger,
            logging.INFO,
            "prometheus rules written",
            path=self.config.prometheus_rules_file,
            skipped=skipped,
        )


def _create(config: AnomalyProcessorConfig, settings: CreateSettings) -> AnomalyProcessor:
    return AnomalyProcessor(config, settings)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="anomaly",
    config_type=AnomalyProcessorConfig,
    create=_create,
    signals=frozenset({Signal.TRACES}),
    description="Alert rules on GenAI span signals per group; Alertmanager, PagerDuty, Slack, webhooks; health score.",
)
