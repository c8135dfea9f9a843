"""The alert state machine per rule and group, and the evaluator that feeds it signals.

States follow Prometheus: ``inactive`` -> ``pending`` (fire condition holds, not yet for ``for``) ->
``firing`` -> ``inactive`` (resolved). On top of that:

- **minimum samples**: a window with fewer than ``min_samples`` samples is no data; it neither
  advances nor resets the ``for`` timers, and detectors do not learn from it;
- **hysteresis**: firing ends only on the detector's resolve condition (looser than the fire one),
  held for ``keep_firing_for``;
- **cooldown**: after a resolution the same rule and group does not fire again for ``cooldown``, so
  a flapping signal pages at most once per cooldown;
- **severity**: fixed when the alert fires (``critical`` if the detector judged that sample
  critical, else the rule's); one open alert per rule and group.

Nothing here reads a clock or does I/O; the processor and ``otel-llm alerts test`` drive it with
data time. :meth:`Evaluator.open_alerts` and :meth:`Evaluator.restore` carry open alerts over a
restart (the processor's ``state_file``); detector baselines are not carried and learn again.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from collector.alerting.detectors import Assessment, Detector, build_detector
from collector.alerting.rules import RuleConfig
from collector.alerting.signals import (
    GroupKey,
    Observation,
    SignalAggregator,
    SignalValue,
    StoreReader,
    compute,
    needs_store,
)

__all__ = [
    "AlertState",
    "Evaluator",
    "OpenAlert",
    "RuleRunner",
    "Transition",
    "alert_fingerprint",
    "label_name",
]


class AlertState(StrEnum):
    """Lifecycle state of one alert (rule and group)."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


def label_name(dimension: str) -> str:
    """Prometheus label name for a group dimension (``service.name`` -> ``service_name``)."""
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in dimension)


def alert_fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """Stable id of one rule and group: PagerDuty's ``dedup_key``, the webhook's ``id``."""
    text = rule + "\x00" + "\x00".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of one alert, with what the detector saw."""

    rule: str
    group: Mapping[str, str]
    previous: AlertState
    state: AlertState
    at: float
    severity: str
    value: float
    score: float
    baseline: float
    started_at: float
    reason: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @property
    def fingerprint(self) -> str:
        return alert_fingerprint(self.rule, self.group)

    @property
    def resolved(self) -> bool:
        return self.previous is AlertState.FIRING and self.state is AlertState.INACTIVE


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """A pending or firing alert as it is saved and restored: enough to carry it over a restart."""

    rule: str
    key: tuple[str, ...]
    labels: Mapping[str, str]
    state: AlertState
    since: float  # data time it started pending (pending) or firing (firing)
    severity: str
    value: float

    @property
    def fingerprint(self) -> str:
        return alert_fingerprint(self.rule, self.labels)


@dataclass(slots=True)
class _Alert:
    detector_state: Any
    state: AlertState = AlertState.INACTIVE
    pending_since: float = math.nan
    clear_since: float = math.nan
    started_at: float = math.nan
    resolved_at: float = -math.inf
    severity: str = ""
    last: Assessment | None = None
    last_value: float = math.nan


class _SafeFormat(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class RuleRunner:
    """One rule over any number of groups; ``step`` takes one window's value of one group."""

    def __init__(self, rule: RuleConfig) -> None:
        self.rule = rule
        self.detector: Detector = build_detector(rule.detector)
        self.alerts: dict[GroupKey, _Alert] = {}

    def state(self, group: GroupKey) -> AlertState:
        alert = self.alerts.get(group)
        return alert.state if alert else AlertState.INACTIVE

    def step(
        self, group: GroupKey, labels: Mapping[str, str], t: float, sample: SignalValue | None
    ) -> Transition | None:
        """Judge one window ending at ``t``; return the transition it causes, if any."""
        rule = self.rule
        alert = self.alerts.get(group)
        if alert is None:
            alert = self.alerts[group] = _Alert(self.detector.new_state())
        if sample is None or sample.n < rule.min_samples or not math.isfinite(sample.value):
            return None
        verdict = self.detector.step(alert.detector_state, t, sample.value)
        if not verdict.ready:
            return None
        alert.last, alert.last_value = verdict, sample.value
        if alert.state is AlertState.FIRING:
            if not verdict.clear:
                alert.clear_since = math.nan
                return None
            if math.isnan(alert.clear_since):
                alert.clear_since = t
            if t - alert.clear_since < rule.keep_firing_for:
                return None
            alert.resolved_at = t
            alert.clear_since = math.nan
            return self._move(alert, group, labels, AlertState.INACTIVE, t, "resolve condition met")
        if not verdict.breach:
            if alert.state is AlertState.PENDING:
                alert.pending_since = math.nan
                return self._move(
                    alert, group, labels, AlertState.INACTIVE, t, "fire condition no longer met"
                )
            return None
        if t - alert.resolved_at < rule.cooldown:
            return None
        if alert.state is AlertState.INACTIVE:
            alert.pending_since = t
            if rule.for_ > 0:
                return self._move(alert, group, labels, AlertState.PENDING, t, "fire condition met")
        if t - alert.pending_since >= rule.for_:
            alert.started_at = t
            alert.severity = "critical" if verdict.critical else rule.severity
            return self._move(alert, group, labels, AlertState.FIRING, t, "fire condition held")
        return None

    def close(self, group: GroupKey, labels: Mapping[str, str], t: float, reason: str) -> Transition | None:
        """End the group's alert (group expired, rule removed, shutdown); forget its state."""
        alert = self.alerts.pop(group, None)
        if alert is None or alert.state is AlertState.INACTIVE:
            return None
        return self._move(alert, group, labels, AlertState.INACTIVE, t, reason)

    def restore(self, group: GroupKey, saved: OpenAlert) -> None:
        """Put a saved open alert back; the detector starts fresh (it must warm up before it resolves)."""
        alert = self.alerts[group] = _Alert(self.detector.new_state())
        alert.state = saved.state
        alert.last_value = saved.value
        if saved.state is AlertState.FIRING:
            alert.started_at = saved.since
            alert.pending_since = saved.since
            alert.severity = saved.severity
        else:
            alert.pending_since = saved.since

    def open_groups(self) -> list[GroupKey]:
        return [key for key, alert in self.alerts.items() if alert.state is not AlertState.INACTIVE]

    def _move(
        self, alert: _Alert, group: GroupKey, labels: Mapping[str, str], to: AlertState, t: float, reason: str
    ) -> Transition:
        previous = alert.state
        alert.state = to
        verdict = alert.last or Assessment(ready=False)
        severity = alert.severity or self.rule.severity
        fields = _SafeFormat(labels)
        fields.update(
            value=f"{alert.last_value:.4g}",
            baseline=f"{verdict.baseline:.4g}",
            score=f"{verdict.score:.3g}",
            signal=self.rule.signal,
            rule=self.rule.name,
        )
        annotations = {key: text.format_map(fields) for key, text in self.rule.annotations.items()}
        annotations.setdefault(
            "summary",
            f"{self.rule.name}: {self.rule.signal} = {alert.last_value:.4g} "
            f"({self.rule.detector.type} score {verdict.score:.3g}, baseline {verdict.baseline:.4g})",
        )
        return Transition(
            rule=self.rule.name,
            group=dict(labels),
            previous=previous,
            state=to,
            at=t,
            severity=severity,
            value=alert.last_value,
            score=verdict.score,
            baseline=verdict.baseline,
            started_at=alert.started_at if to is not AlertState.PENDING else t,
            reason=reason,
            labels={"alertname": self.rule.name, "severity": severity, **self.rule.labels, **labels},
            annotations=annotations,
        )


@dataclass
class Evaluator:
    """Signals per group, evaluated every interval of data time through every rule.

    ``group_by`` names dimensions; an observation arrives with its values in that order. Rules with
    their own ``group_by`` (a subset of the processor's) see windows merged over the other dimensions.
    """

    interval_s: float
    group_by: Sequence[str]
    rules: Sequence[RuleConfig] = ()
    store: StoreReader | None = None
    group_ttl_s: float = 3600.0
    max_groups: int = 1000
    min_window_s: float = 0.0
    runners: dict[str, RuleRunner] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._labels = [label_name(d) for d in self.group_by]
        # Restored alerts whose group has not been seen since the restart: (rule, key) -> data time after
        # which they close as expired, as a group that stopped sending would have.
        self._restored: dict[tuple[str, GroupKey], float] = {}
        self.aggregator = SignalAggregator(self.interval_s, self._keep(self.rules), self.max_groups)
        self.set_rules(self.rules)
        self.evaluations = 0

    def _keep(self, rules: Sequence[RuleConfig]) -> int:
        longest = max((r.window or self.interval_s for r in rules), default=self.interval_s)
        longest = max(longest, self.min_window_s)
        return max(1, math.ceil(longest / self.interval_s - 1e-9))

    def set_rules(self, rules: Sequence[RuleConfig], at: float = math.nan) -> list[Transition]:
        """Swap the rules; unchanged rules keep their state, changed and removed ones close their alerts."""
        old = self.runners
        self.rules = tuple(rules)
        self.runners = {}
        closed: list[Transition] = []
        for rule in self.rules:
            if not rule.enabled:
                continue
            previous = old.get(rule.name)
            self.runners[rule.name] = previous if previous and previous.rule == rule else RuleRunner(rule)
        for name, runner in old.items():
            if self.runners.get(name) is not runner:
                for group in runner.open_groups():
                    transition = runner.close(
                        group, self._group_labels(runner.rule, group), at, "rule changed or removed"
                    )
                    if transition:
                        closed.append(transition)
        self.aggregator.keep = self._keep(self.rules)
        return closed

    def _group_labels(self, rule: RuleConfig, key: GroupKey) -> dict[str, str]:
        if rule.group_by is None:
            return dict(zip(self._labels, key, strict=True))
        return dict(zip([label_name(d) for d in rule.group_by], key, strict=True))

    def observe(self, t: float, group: GroupKey, obs: Observation) -> list[Transition]:
        """Add one observation at data time ``t``; evaluate first if ``t`` closes intervals."""
        transitions = self.advance(t)
        self.aggregator.observe(t, group, obs)
        return transitions

    def advance(self, t: float) -> list[Transition]:
        """Move data time to ``t``: evaluate every interval that ends at or before it."""
        transitions: list[Transition] = []
        for end in self.aggregator.due(t):
            transitions.extend(self.evaluate(end))
        return transitions

    def evaluate(self, end: float) -> list[Transition]:
        """Evaluate every rule for every group on the windows ending at ``end``."""
        self.evaluations += 1
        out: list[Transition] = []
        for gone in self.aggregator.expire(end - self.group_ttl_s):
            for runner in self.runners.values():
                if runner.rule.group_by is None:
                    transition = runner.close(
                        gone, self._group_labels(runner.rule, gone), end, "group expired"
                    )
                    if transition:
                        out.append(transition)
        keys = list(self.aggregator.group_keys())
        cache: dict[tuple[tuple[str, ...] | None, float], dict[GroupKey, Any]] = {}
        for runner in self.runners.values():
            rule = runner.rule
            window = rule.window or self.interval_s
            cache_key = (tuple(rule.group_by) if rule.group_by is not None else None, window)
            if cache_key not in cache:
                cache[cache_key] = self._windows(rule, keys, end, window)
            for key, merged in cache[cache_key].items():
                labels = self._group_labels(rule, key)
                sample = (
                    compute(rule.signal, merged, window) if merged.count or needs_store(rule.signal) else None
                )
                if needs_store(rule.signal) and (sample is None or sample.n == 0) and self.store is not None:
                    sample = self.store.read(rule.signal, labels, end)
                transition = runner.step(key, labels, end, sample)
                if transition:
                    out.append(transition)
                self._restored.pop((rule.name, key), None)
        for (name, key), deadline in list(self._restored.items()):
            runner_or_none = self.runners.get(name)
            if runner_or_none is None or runner_or_none.state(key) is AlertState.INACTIVE:
                del self._restored[(name, key)]
            elif end >= deadline:
                del self._restored[(name, key)]
                transition = runner_or_none.close(
                    key, self._group_labels(runner_or_none.rule, key), end, "group expired"
                )
                if transition:
                    out.append(transition)
        return out

    def open_alerts(self) -> list[OpenAlert]:
        """Every pending or firing alert, to save."""
        out: list[OpenAlert] = []
        for runner in self.runners.values():
            for key, alert in runner.alerts.items():
                if alert.state is AlertState.INACTIVE:
                    continue
                firing = alert.state is AlertState.FIRING
                out.append(
                    OpenAlert(
                        rule=runner.rule.name,
                        key=tuple(key),
                        labels=self._group_labels(runner.rule, key),
                        state=alert.state,
                        since=alert.started_at if firing else alert.pending_since,
                        severity=alert.severity or runner.rule.severity,
                        value=alert.last_value,
                    )
                )
        return out

    def restore(self, alerts: Sequence[OpenAlert], at: float) -> list[OpenAlert]:
        """Put saved open alerts back; return those whose rule is gone, disabled or regrouped.

        ``at`` is the data time they were saved at: a restored alert whose group sends nothing closes
        ``group_ttl_s`` after it, as it would have without the restart.
        """
        dropped: list[OpenAlert] = []
        for saved in alerts:
            runner = self.runners.get(saved.rule)
            dims = (
                runner.rule.group_by
                if runner is not None and runner.rule.group_by is not None
                else self.group_by
            )
            if runner is None or len(saved.key) != len(dims) or saved.state is AlertState.INACTIVE:
                dropped.append(saved)
                continue
            runner.restore(saved.key, saved)
            self._restored[(saved.rule, saved.key)] = at + self.group_ttl_s
        return dropped

    def _windows(
        self, rule: RuleConfig, keys: list[GroupKey], end: float, window: float
    ) -> dict[GroupKey, Any]:
        if rule.group_by is None:
            merged = {key: self.aggregator.window(key, end, window) for key in keys}
            return {key: bucket for key, bucket in merged.items() if bucket is not None}
        positions = [list(self.group_by).index(d) for d in rule.group_by if d in self.group_by]
        return self.aggregator.rolled_up(keys, positions, end, window)

    def firing(self) -> list[tuple[str, Mapping[str, str], AlertState, str]]:
        """Open alerts: (rule, group labels, state, severity)."""
        out: list[tuple[str, Mapping[str, str], AlertState, str]] = []
        for runner in self.runners.values():
            for key, alert in runner.alerts.items():
                if alert.state is not AlertState.INACTIVE:
                    out.append(
                        (
                            runner.rule.name,
                            self._group_labels(runner.rule, key),
                            alert.state,
                            alert.severity or runner.rule.severity,
                        )
                    )
        return out
