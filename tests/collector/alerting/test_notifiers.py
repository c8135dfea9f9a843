"""Notifiers against a loopback server standing in for PagerDuty, Slack and a signed webhook."""

from __future__ import annotations

import logging
import time

import pytest

from collector.alerting.notifiers import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertmanagerNotifier,
    Delivery,
    Notification,
    PagerDutyNotifier,
    Route,
    SlackNotifier,
    WebhookNotifier,
    sign,
    verify_signature,
)
from tests.collector.alerting._http import recording_server

LOGGER = logging.getLogger("test.alerting")
FAST = Delivery(queue_size=10, max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, timeout_s=2.0)
NOW = time.time()


def note(status: str = "firing", fingerprint: str = "f1", rule: str = "LLMCostSpike") -> Notification:
    return Notification(
        fingerprint=fingerprint,
        rule=rule,
        status=status,
        severity="critical",
        labels={
            "alertname": rule,
            "severity": "critical",
            "service_name": "chat",
            "gen_ai_request_model": "m",
        },
        annotations={"summary": "cost is 3x", "runbook_url": "https://runbooks/cost"},
        starts_at=NOW - 60,
        ends_at=None if status == "firing" else NOW,
        value=0.3,
        baseline=0.1,
        generator_url="https://grafana/d/llm",
    )


def test_pagerduty_trigger_and_resolve_share_a_dedup_key() -> None:
    with recording_server() as server:
        route = Route(PagerDutyNotifier("R0UT1NG", url=server.url + "/v2/enqueue"), FAST, LOGGER)
        route.start()
        try:
            assert route.submit(note("firing"))
            assert route.submit(note("resolved"))
            assert route.flush(5)
        finally:
            route.shutdown(5)
        trigger, resolve = (r.json() for r in server.wait_for(2))
    assert server.requests[0].path == "/v2/enqueue"
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "f1"
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UT1NG"
    payload = trigger["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "chat"
    assert payload["summary"] == "cost is 3x" and payload["class"] == "LLMCostSpike"
    assert (
        payload["custom_details"]["value"] == 0.3 and trigger["links"][0]["href"] == "https://grafana/d/llm"
    )


def test_slack_message() -> None:
    with recording_server() as server:
        server.default_status = 200
        route = Route(SlackNotifier(server.url + "/services/T/B/X"), FAST, LOGGER)
        route.start()
        route.submit(note())
        route.shutdown(5)
        (message,) = server.wait_for(1)
    text = message.json()["text"]
    assert "FIRING" in text and "LLMCostSpike" in text and "service_name=chat" in text
    assert "cost is 3x" in text and "https://runbooks/cost" in text


def test_webhook_is_signed_with_hmac_sha256() -> None:
    with recording_server() as server:
        route = Route(WebhookNotifier(server.url + "/hook", secret="s3cret"), FAST, LOGGER)
        route.start()
        route.submit(note())
        route.shutdown(5)
        (request,) = server.wait_for(1)
    stamp, signature = request.headers[TIMESTAMP_HEADER.lower()], request.headers[SIGNATURE_HEADER.lower()]
    assert verify_signature("s3cret", stamp, request.body, signature)
    assert not verify_signature("wrong", stamp, request.body, signature)
    assert not verify_signature("s3cret", stamp, request.body + b" ", signature)
    assert not verify_signature("s3cret", str(int(stamp) - 3600), request.body, signature)
    body = request.json()
    assert body["id"] == "f1" and body["status"] == "firing" and body["endsAt"] is None
    assert body["labels"]["service_name"] == "chat"


def test_signature_is_over_timestamp_and_body() -> None:
    expected = "v1=" + __import__("hmac").new(b"k", b"17.{}", "sha256").hexdigest()
    assert sign("k", 17, b"{}") == expected


def test_retries_on_5xx_and_429_then_succeeds() -> None:
    with recording_server() as server:
        server.statuses = [503, 429]
        route = Route(WebhookNotifier(server.url), FAST, LOGGER)
        route.start()
        route.submit(note())
        assert route.flush(5)
        route.shutdown(5)
    assert len(server.requests) == 3
    assert (route.stats.sent, route.stats.retries, route.stats.failed) == (1, 2, 0)


def test_no_retry_on_400_and_gives_up_after_max_attempts(caplog: pytest.LogCaptureFixture) -> None:
    with recording_server() as server:
        server.statuses = [400, 500, 500, 500]
        route = Route(WebhookNotifier(server.url), FAST, LOGGER)
        route.start()
        route.submit(note(fingerprint="a"))
        route.submit(note(fingerprint="b"))
        assert route.flush(5)
        route.shutdown(5)
    assert route.stats.failed == 2 and route.stats.retries == 2
    assert len(server.requests) == 4  # 1 for the 400, 3 attempts for the 500s


def test_unreachable_endpoint_counts_a_failure() -> None:
    route = Route(WebhookNotifier("http://127.0.0.1:9/"), FAST, LOGGER)
    route.start()
    route.submit(note())
    assert route.flush(10)
    route.shutdown(5)
    assert route.stats.failed == 1


def test_duplicates_are_not_sent_and_a_full_queue_drops() -> None:
    route = Route(WebhookNotifier("http://127.0.0.1:9/"), Delivery(queue_size=2), LOGGER)
    # Not started: nothing drains the queue.
    assert route.submit(note(fingerprint="a"))
    assert not route.submit(note(fingerprint="a"))  # already open
    assert not route.submit(note("resolved", fingerprint="zzz"))  # never opened
    assert route.submit(note(fingerprint="b"))
    assert not route.submit(note(fingerprint="c"))  # queue full
    assert (route.stats.deduplicated, route.stats.dropped) == (2, 1)
    route.shutdown(1)  # safe before start


def test_alertmanager_payload_and_resend_while_open() -> None:
    with recording_server() as server:
        notifier = AlertmanagerNotifier(server.url, resend_interval_s=0.2)
        route = Route(notifier, FAST, LOGGER, resend_interval_s=0.2)
        route.start()
        route.submit(note())
        posts = server.wait_for(3, timeout_s=5)
        route.submit(note("resolved"))
        route.flush(5)
        time.sleep(0.5)
        route.shutdown(5)
    assert len(posts) >= 3 and all(p.path == "/api/v2/alerts" for p in posts)
    (first,) = posts[0].json()
    assert first["labels"]["alertname"] == "LLMCostSpike" and first["generatorURL"] == "https://grafana/d/llm"
    assert first["startsAt"] < first["endsAt"]
    last = server.requests[-1].json()
    assert len(last) == 1 and last[0]["endsAt"] <= posts[-1].json()[0]["endsAt"]
    # After the resolution nothing is re-sent.
    assert route.open_alerts() == []
