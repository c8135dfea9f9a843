"""Notifiers: Alertmanager (primary), PagerDuty Events v2, Slack incoming webhooks, signed webhooks.

Every notifier gets its own worker thread and bounded queue (a :class:`Route`), so a slow or failing
endpoint never holds up ingestion or another notifier. A full queue drops the notification and counts
it. Sending retries connection errors, timeouts, 429 and 5xx with exponential backoff (``Retry-After``
honoured, capped), and gives up at once on other 4xx answers, which retrying cannot fix.

Deduplication: a route keeps the set of open alerts (by fingerprint, one per rule and group). A firing
notification for an alert already open, or a resolution for one that is not, is not sent again. The
state machine's cooldown keeps a flapping signal from opening a new alert more than once per cooldown.

Alertmanager gets what Prometheus sends it: every open alert again every ``resend_interval`` with
``endsAt`` a few intervals ahead (so Alertmanager resolves it by itself if the collector dies), and a
final post with ``endsAt`` set to the resolution time.

Signed webhooks carry ``X-Otel-Llm-Timestamp`` (Unix seconds) and ``X-Otel-Llm-Signature``
(``v1=`` + hex HMAC-SHA256 of ``"<timestamp>." + body`` under the shared secret); receivers check
both with :func:`verify_signature` and reject old timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx2

from collector.alerting.engine import AlertState, Transition, label_name
from collector.logs import event
from otel_llm.conventions import attributes as attrs

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertmanagerNotifier",
    "Delivery",
    "Notification",
    "Notifier",
    "PagerDutyNotifier",
    "PermanentError",
    "RetryableError",
    "Route",
    "SlackNotifier",
    "WebhookNotifier",
    "notification_from",
    "rfc3339",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Otel-Llm-Signature"
TIMESTAMP_HEADER = "X-Otel-Llm-Timestamp"
_USER_AGENT = "otel-llm-collector"
_MODEL_LABEL = label_name(attrs.GEN_AI_REQUEST_MODEL)


class RetryableError(Exception):
    """The endpoint may accept the same request later; ``retry_after`` is its hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """The endpoint refused the request for good (a 4xx other than 408/429)."""


def rfc3339(t: float) -> str:
    """``2026-01-02T03:04:05.678Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class Notification:
    """What every notifier needs about one alert change."""

    fingerprint: str
    rule: str
    status: str  # "firing" or "resolved"
    severity: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None
    value: float
    baseline: float
    generator_url: str = ""

    @property
    def summary(self) -> str:
        return self.annotations.get("summary") or f"{self.rule} {self.status}"


def notification_from(transition: Transition, generator_url: str = "") -> Notification | None:
    """The notification for a transition; ``None`` for changes nobody is told about (pending)."""
    if transition.state is AlertState.FIRING:
        status, ends = "firing", None
    elif transition.resolved:
        status, ends = "resolved", transition.at
    else:
        return None
    return Notification(
        fingerprint=transition.fingerprint,
        rule=transition.rule,
        status=status,
        severity=transition.severity,
        labels=dict(transition.labels),
        annotations=dict(transition.annotations),
        starts_at=transition.started_at,
        ends_at=ends,
        value=transition.value,
        baseline=transition.baseline,
        generator_url=generator_url,
    )


class Notifier(Protocol):
    """Sends notifications over one client; raises :class:`RetryableError` or :class:`PermanentError`."""

    name: str
    #: Whether one request carries many notifications (Alertmanager); others get one at a time, so a
    #: refused notification never takes others down with it.
    batches: bool

    def send(self, client: httpx2.Client, batch: Sequence[Notification], now: float) -> None: ...


def _post(client: httpx2.Client, url: str, body: bytes, headers: Mapping[str, str]) -> None:
    try:
        response = client.post(url, content=body, headers={"User-Agent": _USER_AGENT, **headers})
    except httpx2.TimeoutException as exc:
        raise RetryableError(f"timeout: {exc}") from None
    except httpx2.TransportError as exc:
        raise RetryableError(f"{type(exc).__name__}: {exc}") from None
    status = response.status_code
    if status < 300:
        return
    detail = response.text[:200]
    if status in (408, 429) or status >= 500:
        retry_after: float | None = None
        header = response.headers.get("Retry-After")
        if header and header.strip().isdigit():
            retry_after = float(header.strip())
        raise RetryableError(f"HTTP {status}: {detail}", retry_after)
    raise PermanentError(f"HTTP {status}: {detail}")


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class AlertmanagerNotifier:
    """Prometheus Alertmanager v2: ``POST {url}/api/v2/alerts`` with a list of alerts."""

    url: str
    resend_interval_s: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)
    name: str = "alertmanager"
    batches: bool = True

    def payload(self, batch: Sequence[Notification], now: float) -> list[dict[str, Any]]:
        out = []
        for n in batch:
            if n.ends_at is None:
                # Like Prometheus: a firing alert expires by itself unless re-sent.
                ends = max(now, n.starts_at) + 4 * self.resend_interval_s
            else:
                ends = max(n.ends_at, n.starts_at)
            alert: dict[str, Any] = {
                "labels": dict(n.labels),
                "annotations": dict(n.annotations),
                "startsAt": rfc3339(n.starts_at),
                "endsAt": rfc3339(ends),
            }
            if n.generator_url:
                alert["generatorURL"] = n.generator_url
            out.append(alert)
        return out

    def send(self, client: httpx2.Client, batch: Sequence[Notification], now: float) -> None:
        body = _json(self.payload(batch, now))
        _post(
            client,
            self.url.rstrip("/") + "/api/v2/alerts",
            body,
            {"Content-Type": "application/json", **self.headers},
        )


_PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


@dataclass
class PagerDutyNotifier:
    """PagerDuty Events API v2: trigger and resolve with the alert fingerprint as ``dedup_key``."""

    routing_key: str
    url: str = "https://events.pagerduty.com/v2/enqueue"
    source: str = "otel-llm"
    name: str = "pagerduty"
    batches: bool = False

    def payload(self, n: Notification) -> dict[str, Any]:
        if n.status == "resolved":
            return {"routing_key": self.routing_key, "event_action": "resolve", "dedup_key": n.fingerprint}
        details = {"labels": dict(n.labels), "annotations": dict(n.annotations), "value": n.value}
        if math.isfinite(n.baseline):
            details["baseline"] = n.baseline
        body: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": n.fingerprint,
            "payload": {
                "summary": n.summary[:1024],
                "source": n.labels.get("service_name") or self.source,
                "severity": _PD_SEVERITY.get(n.severity, "warning"),
                "timestamp": rfc3339(n.starts_at),
                "component": n.labels.get(_MODEL_LABEL, ""),
                "group": n.labels.get("service_name", ""),
                "class": n.rule,
                "custom_details": details,
            },
            "client": "otel-llm",
        }
        if n.generator_url:
            body["client_url"] = n.generator_url
            body["links"] = [{"href": n.generator_url, "text": "source"}]
        return body

    def send(self, client: httpx2.Client, batch: Sequence[Notification], now: float) -> None:
        for n in batch:
            _post(client, self.url, _json(self.payload(n)), {"Content-Type": "application/json"})


@dataclass
class SlackNotifier:
    """Slack incoming webhook: one message per change."""

    webhook_url: str
    name: str = "slack"
    batches: bool = False

    def payload(self, n: Notification) -> dict[str, Any]:
        mark = ":red_circle:" if n.status == "firing" else ":large_green_circle:"
        group = ", ".join(
            f"{k}={v}" for k, v in sorted(n.labels.items()) if k not in ("alertname", "severity")
        )
        text = f"{mark} *{n.status.upper()}* [{n.severity}] {n.rule} ({group})\n{n.summary}"
        if n.annotations.get("runbook_url"):
            text += f"\nRunbook: {n.annotations['runbook_url']}"
        return {"text": text}

    def send(self, client: httpx2.Client, batch: Sequence[Notification], now: float) -> None:
        for n in batch:
            _post(client, self.webhook_url, _json(self.payload(n)), {"Content-Type": "application/json"})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256 of ``"<timestamp>." + body`` under ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """Whether ``signature`` is valid for ``body`` and ``timestamp`` is within ``tolerance_s`` of now."""
    if not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


@dataclass
class WebhookNotifier:
    """A generic JSON webhook, signed with HMAC-SHA256 when a secret is set."""

    url: str
    secret: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    name: str = "webhook"
    batches: bool = False

    def payload(self, n: Notification) -> dict[str, Any]:
        return {
            "version": "1",
            "id": n.fingerprint,
            "status": n.status,
            "rule": n.rule,
            "severity": n.severity,
            "labels": dict(n.labels),
            "annotations": dict(n.annotations),
            "startsAt": rfc3339(n.starts_at),
            "endsAt": rfc3339(n.ends_at) if n.ends_at is not None else None,
            "value": n.value if math.isfinite(n.value) else None,
            "baseline": n.baseline if math.isfinite(n.baseline) else None,
            "generatorURL": n.generator_url or None,
        }

    def send(self, client: httpx2.Client, batch: Sequence[Notification], now: float) -> None:
        for n in batch:
            body = _json(self.payload(n))
            headers = {"Content-Type": "application/json", **self.headers}
            if self.secret:
                stamp = int(now)
                headers[TIMESTAMP_HEADER] = str(stamp)
                headers[SIGNATURE_HEADER] = sign(self.secret, stamp, body)
            _post(client, self.url, body, headers)


@dataclass(frozen=True)
class Delivery:
    """Queue, retry and timeout settings shared by every route."""

    queue_size: int = 1000
    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    timeout_s: float = 5.0


@dataclass
class RouteStats:
    """Counters of one route, read by tests and exported as self-telemetry."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    deduplicated: int = 0


class Route:
    """One notifier behind a worker thread and a bounded queue.

    ``submit`` never blocks. ``resend_interval_s`` > 0 makes the worker re-send every open alert on
    that interval (Alertmanager). Thread-safe; ``start`` and ``shutdown`` as components.
    """

    def __init__(
        self,
        notifier: Notifier,
        delivery: Delivery,
        logger: logging.Logger,
        *,
        resend_interval_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.notifier = notifier
        self.delivery = delivery
        self.logger = logger
        self.resend_interval_s = resend_interval_s
        self.clock = clock
        self.on_drop = on_drop
        self.stats = RouteStats()
        self._queue: queue.Queue[Notification] = queue.Queue(maxsize=delivery.queue_size)
        self._open: dict[str, Notification] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._client: httpx2.Client | None = None

    def submit(self, n: Notification) -> bool:
        """Queue ``n`` unless it repeats the known state; ``False`` when dropped or deduplicated."""
        with self._lock:
            is_open = n.fingerprint in self._open
            if (n.status == "firing") == is_open:
                self.stats.deduplicated += 1
                return False
            if n.status == "firing":
                self._open[n.fingerprint] = n
            else:
                self._open.pop(n.fingerprint, None)
        with self._idle:
            try:
                self._queue.put_nowait(n)
            except queue.Full:
                full = True
            else:
                full = False
                self._busy += 1
        if full:
            self.stats.dropped += 1
            if self.on_drop:
                self.on_drop()
            return False
        return True

    def restore(self, n: Notification) -> None:
        """Mark a firing alert as already notified (carried over a restart): no page now, a resolve later."""
        if n.status == "firing":
            with self._lock:
                self._open[n.fingerprint] = n

    def open_alerts(self) -> list[Notification]:
        with self._lock:
            return list(self._open.values())

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._client = httpx2.Client(timeout=self.delivery.timeout_s)
        self._thread = threading.Thread(
            target=self._run, name=f"alert-route-{self.notifier.name}", daemon=True
        )
        self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued notification is sent or given up; ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def shutdown(self, timeout_s: float) -> None:
        if self._thread is None:
            return
        self.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout_s)
        self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        next_resend = time.monotonic() + self.resend_interval_s if self.resend_interval_s > 0 else math.inf
        while not self._stop.is_set():
            wait = min(0.2, max(0.0, next_resend - time.monotonic()))
            try:
                item: Notification | None = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is not None:
                batch = [item]
                while len(batch) < 64:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if self.notifier.batches:
                    self._deliver(batch)
                else:
                    for one in batch:
                        self._deliver([one])
                with self._idle:
                    self._busy -= len(batch)
                    self._idle.notify_all()
            if time.monotonic() >= next_resend:
                next_resend = time.monotonic() + self.resend_interval_s
                still_open = self.open_alerts()
                if still_open:
                    self._deliver(still_open, resend=True)

    def _deliver(self, batch: list[Notification], resend: bool = False) -> None:
        assert self._client is not None
        d = self.delivery
        delay = d.initial_backoff_s
        for attempt in range(1, d.max_attempts + 1):
            try:
                self.notifier.send(self._client, batch, self.clock())
            except RetryableError as exc:
                if attempt == d.max_attempts or self._stop.is_set():
                    self._failed(batch, str(exc), attempt)
                    return
                self.stats.retries += 1
                pause = min(d.max_backoff_s, exc.retry_after if exc.retry_after is not None else delay)
                delay = min(d.max_backoff_s, delay * 2)
                if self._stop.wait(pause):
                    self._failed(batch, f"shut down while retrying: {exc}", attempt)
                    return
                continue
            except PermanentError as exc:
                self._failed(batch, str(exc), attempt)
                return
            except Exception as exc:  # a bug in a payload builder must not kill the worker
                self._failed(batch, f"{type(exc).__name__}: {exc}", attempt)
                return
            self.stats.sent += len(batch)
            if not resend:
                for n in batch:
                    event(
                        self.logger,
                        logging.INFO,
                        "alert notification sent",
                        notifier=self.notifier.name,
                        rule=n.rule,
                        status=n.status,
                        fingerprint=n.fingerprint,
                        attempts=attempt,
                    )
            return

    def _failed(self, batch: list[Notification], reason: str, attempts: int) -> None:
        self.stats.failed += len(batch)
        event(
            self.logger,
            logging.WARNING,
            "alert notification failed",
            notifier=self.notifier.name,
            rules=sorted({n.rule for n in batch}),
            reason=reason,
            attempts=attempts,
        )
