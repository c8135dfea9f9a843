"""The ``anomaly`` processor: spans in, alerts out (signed webhook, PagerDuty stand-in), metrics, reloads, audit."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.alerting.health import health_rows
from collector.alerting.notifiers import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from collector.alerting.simulate import Fault, generate
from collector.component import ComponentId, CreateSettings, Host, Kind
from collector.configuration import parse_config
from collector.data import TraceBatch
from collector.errors import ComponentError, ConfigError
from collector.metrics import MetricStore, render_text, shared_store
from collector.processors.anomaly import FACTORY, AnomalyProcessor
from collector.telemetry import SelfTelemetry
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import events as ev
from otel_llm.conventions import metrics as m
from tests.collector.alerting._http import Recorder, recording_server

RULES = Path(__file__).resolve().parents[3] / "config" / "alerts"
START = 1_700_006_400.0 - 1_700_006_400.0 % 86400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_host() -> Host:
    host = Host(telemetry=SelfTelemetry("t"))
    host.shared["collector.service.instance_id"] = "t"
    return host


def build(config: dict[str, Any], clock: Clock | None = None) -> AnomalyProcessor:
    settings = CreateSettings(
        id=ComponentId("anomaly"),
        kind=Kind.PROCESSOR,
        logger=logging.getLogger("otel_llm.collector.processors.anomaly"),
        telemetry=SelfTelemetry("t"),
    )
    parsed = FACTORY.config_type.model_validate(config)
    assert parsed.problems() == []
    return AnomalyProcessor(parsed, settings, clock=clock or Clock(START))


def rules_dir(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "alerts"
    folder.mkdir()
    for name in names:
        shutil.copy(RULES / name, folder / name)
    return folder


def batch_for(items: list[tuple[float, Any]], model: str = "gpt-4o", service: str = "chat") -> TraceBatch:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    for t, obs in items:
        span = ss.spans.add()
        span.name = f"chat {model}"
        span.end_time_unix_nano = int(t * 1e9)
        span.start_time_unix_nano = int((t - obs.duration_s) * 1e9)
        for key, value in (
            (attrs.GEN_AI_OPERATION_NAME, "chat"),
            (attrs.GEN_AI_PROVIDER_NAME, "openai"),
            (attrs.GEN_AI_REQUEST_MODEL, model),
        ):
            a = span.attributes.add()
            a.key, a.value.string_value = key, value
        a = span.attributes.add()
        a.key, a.value.int_value = attrs.GEN_AI_USAGE_INPUT_TOKENS, obs.tokens
        a = span.attributes.add()
        a.key, a.value.double_value = attrs.GEN_AI_USAGE_COST_AMOUNT, obs.cost
        if obs.is_error:
            a = span.attributes.add()
            a.key, a.value.string_value = attrs.ERROR_TYPE, obs.error_type
        for score in obs.quality:
            event = span.events.add()
            event.name = ev.GEN_AI_EVALUATION_RESULT
            a = event.attributes.add()
            a.key, a.value.double_value = attrs.GEN_AI_EVALUATION_SCORE_VALUE, score
    return TraceBatch(request)


def feed(processor: AnomalyProcessor, hours: float, faults: list[Fault], seed: int = 3) -> None:
    minute: list[tuple[float, Any]] = []
    current = START
    for t, obs in generate(START, hours * 3600, faults=faults, seed=seed):
        if t >= current + 60:
            processor.process(batch_for(minute))
            minute, current = [], current + 60 * ((t - current) // 60)
        minute.append((t, obs))
    processor.process(batch_for(minute))


@pytest.fixture
def endpoints() -> Iterator[Recorder]:
    with recording_server() as server:
        yield server


def test_lifecycle(tmp_path: Path) -> None:
    processor = build({"rules_dir": str(rules_dir(tmp_path, "cost.yaml"))})
    processor.shutdown(1)  # before start
    host = make_host()
    processor.start(host)
    processor.start(host)  # idempotent
    processor.shutdown(1)
    processor.shutdown(1)
    processor.start(host)
    processor.shutdown(1)


def test_default_config_loads_the_shipped_rules() -> None:
    config = FACTORY.config_type()
    assert config.rules_dir == "config/alerts" and config.group_by == ["service.name", "gen_ai.request.model"]


def notification_counts(host: Host) -> dict[tuple[str, str], float]:
    store: MetricStore = shared_store(host)
    (snap,) = [s for s in store.snapshot() if s.name == m.OTEL_LLM_ALERT_NOTIFICATIONS]
    out = {}
    for point in snap.points:
        labels = dict(point.attributes)
        out[
            (
                str(labels[attrs.OTEL_LLM_ALERT_NOTIFIER]),
                str(labels[attrs.OTEL_LLM_ALERT_NOTIFICATION_OUTCOME]),
            )
        ] = point.value
    return out


@pytest.fixture
def refusing() -> Iterator[Recorder]:
    """An endpoint that refuses every request for good (400)."""
    with recording_server() as server:
        server.default_status = 400
        yield server


def test_cost_spike_pages_and_resolves_through_every_route(
    tmp_path: Path, endpoints: Recorder, refusing: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    rules_file = tmp_path / "prometheus-rules.yaml"
    processor = build(
        {
            "rules_dir": str(rules_dir(tmp_path, "cost.yaml", "errors.yaml")),
            "pagerduty": {"routing_key": "KEY", "url": endpoints.url + "/pd"},
            "slack": {"webhook_url": endpoints.url + "/slack"},
            "webhooks": [
                {"url": endpoints.url + "/hook", "secret": "s3cret"},
                {"url": refusing.url + "/hook"},
            ],
            "delivery": {"initial_backoff": "10ms"},
            "prometheus_rules_file": str(rules_file),
            "generator_url": "http://grafana/d/1",
        }
    )
    host = make_host()
    caplog.set_level(logging.INFO, logger="otel_llm.collector.processors.anomaly")
    processor.start(host)
    assert notification_counts(host) == {
        (notifier, outcome): 0.0
        for notifier in ("pagerduty", "slack", "webhook")
        for outcome in ("sent", "failed", "dropped", "deduplicated")
    }
    try:
        feed(processor, 2.5, [Fault("cost", 2 * 3600, 15 * 60, 3.0)])
        assert [(t.rule, t.state.value) for t in processor.transitions] == [
            ("LLMCostSpike", "firing"),
            ("LLMCostSpike", "inactive"),
        ]
        fired = processor.transitions[0]
        assert fired.at - START <= 2 * 3600 + 120
        hooks = endpoints.wait_for(2, path="/hook")
        pd = endpoints.wait_for(2, path="/pd")
        slack = endpoints.wait_for(2, path="/slack")
    finally:
        processor.shutdown(5)

    assert [h.json()["status"] for h in hooks] == ["firing", "resolved"]
    for hook in hooks:
        stamp, signature = hook.headers[TIMESTAMP_HEADER.lower()], hook.headers[SIGNATURE_HEADER.lower()]
        assert verify_signature("s3cret", stamp, hook.body, signature, now=int(stamp))
    assert hooks[0].json()["labels"] == {
        "alertname": "LLMCostSpike",
        "severity": fired.severity,
        "service_name": "chat",
        "gen_ai_request_model": "gpt-4o",
    }
    assert [p.json()["event_action"] for p in pd] == ["trigger", "resolve"]
    assert pd[0].json()["dedup_key"] == pd[1].json()["dedup_key"] == fired.fingerprint
    assert "FIRING" in slack[0].json()["text"] and "RESOLVED" in slack[1].json()["text"]

    # Audit trail: one JSON-able line per transition, with who changed it.
    audit = [r for r in caplog.records if r.getMessage() == "alert transition"]
    assert [r.fields["state"] for r in audit] == ["firing", "inactive"]  # type: ignore[attr-defined]
    assert audit[0].fields["changed_by"] == "processor anomaly (evaluation)"  # type: ignore[attr-defined]
    json.dumps(audit[0].fields)  # type: ignore[attr-defined]
    loaded = [r for r in caplog.records if r.getMessage() == "alert rules loaded"]
    assert loaded and loaded[0].fields["changed_by"] == "start-up"  # type: ignore[attr-defined]

    exported = rules_file.read_text()
    assert "alert: LLMCostSpike" in exported and "alert: LLMErrorBurst" in exported

    # Every route's outcomes are counted in the store; both webhooks share notifier="webhook".
    counts = notification_counts(host)
    assert counts[("pagerduty", "sent")] == counts[("slack", "sent")] == 2
    assert counts[("webhook", "sent")] == 2 and counts[("webhook", "failed")] == 2
    assert counts[("pagerduty", "failed")] == counts[("slack", "dropped")] == 0
    assert len(refusing.requests) == 2  # a 400 is not retried


def test_alert_state_and_health_are_metrics_in_the_store(tmp_path: Path) -> None:
    processor = build({"rules_dir": str(rules_dir(tmp_path, "errors.yaml"))})
    host = make_host()
    processor.start(host)
    try:
        feed(processor, 1.0, [Fault("errors", 50 * 60, 30 * 60, 0.5)])
        processor.tick()
    finally:
        processor.shutdown(2)
    store: MetricStore = shared_store(host)
    snaps = {s.name: s for s in store.snapshot()}
    (alert,) = snaps[m.OTEL_LLM_ALERT_STATE].points
    attributes = dict(alert.attributes)
    assert attributes[attrs.OTEL_LLM_ALERT_RULE] == "LLMErrorBurst"
    assert attributes[attrs.OTEL_LLM_ALERT_STATE] == "firing"
    assert attributes[attrs.GEN_AI_REQUEST_MODEL] == "gpt-4o" and alert.value == 1.0
    assert store.resource_attributes(alert.resource) == (("service.name", "chat"),)
    (health,) = snaps[m.OTEL_LLM_HEALTH_SCORE].points
    assert 0 <= health.value < 60  # half of the requests fail: the error component is 0
    assert processor.health[("chat", "gpt-4o")] == health.value

    # What `otel-llm health` reads from the prometheus exporter's endpoint.
    health_rows_, alerts = health_rows(render_text(store, store.snapshot()))
    assert [(r["service"], r["model"]) for r in health_rows_] == [("chat", "gpt-4o")]
    assert [(a["rule"], a["state"], a["service"]) for a in alerts] == [("LLMErrorBurst", "firing", "chat")]


def test_drift_state_is_read_from_the_store(tmp_path: Path) -> None:
    folder = tmp_path / "alerts"
    folder.mkdir()
    (folder / "drift.yaml").write_text(
        "rules:\n  - {name: Drift, signal: drift_state, min_samples: 1, detector: {type: threshold, above: 0.5}}\n"
    )
    processor = build({"rules_dir": str(folder)})
    host = make_host()
    store = shared_store(host)
    gauge = store.gauge(
        m.OTEL_LLM_DRIFT_STATE, ("service.name", attrs.GEN_AI_REQUEST_MODEL, "otel_llm.drift.signal")
    )
    gauge.set(((), ("chat", "gpt-4o", "input_tokens")), 1.0, time.time_ns())
    gauge.set(((), ("chat", "other-model", "input_tokens")), 0.0, time.time_ns())
    processor.start(host)
    try:
        feed(processor, 0.1, [])
    finally:
        processor.shutdown(2)
    assert {(t.rule, t.group["gen_ai_request_model"]) for t in processor.transitions} == {("Drift", "gpt-4o")}


def test_idle_data_time_moves_on_at_wall_speed(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    processor = build({"rules_dir": str(rules_dir(tmp_path, "errors.yaml"))}, clock)
    processor.start(make_host())
    try:
        t0 = START + 600
        burst = [(t0 + i * 0.5, _obs(error=True)) for i in range(40)]
        processor.process(batch_for(burst))
        assert processor.transitions == []  # the minute has not closed yet
        clock.now += 120  # two minutes without spans
        processor.tick()
        assert [t.state.value for t in processor.transitions] == ["firing"]
    finally:
        processor.shutdown(2)


def _obs(error: bool = False) -> Any:
    from collector.alerting.signals import Observation

    return Observation(
        duration_s=1.0, is_error=error, error_type="500" if error else "", tokens=10, cost=0.001
    )


def test_rules_reload_without_restart_and_a_broken_reload_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = rules_dir(tmp_path, "cost.yaml")
    processor = build({"rules_dir": str(folder), "reload_interval": "1s"})
    caplog.set_level(logging.INFO, logger="otel_llm.collector.processors.anomaly")
    processor.start(make_host())
    try:
        assert processor.reload() is False  # nothing changed
        shutil.copy(RULES / "errors.yaml", folder / "errors.yaml")
        assert processor.reload() is True
        assert processor.evaluator is not None
        assert sorted(processor.evaluator.runners) == ["LLMCostSpike", "LLMErrorBurst"]
        (folder / "broken.yaml").write_text("rules:\n  - {name: X, signal: nope, detector: {type: ewma}}\n")
        assert processor.reload() is False
        assert sorted(processor.evaluator.runners) == ["LLMCostSpike", "LLMErrorBurst"]
    finally:
        processor.shutdown(2)
    reloaded = [r.fields for r in caplog.records if r.getMessage() == "alert rules reloaded"]  # type: ignore[attr-defined]
    assert reloaded[0]["added"] == ["LLMErrorBurst"] and reloaded[0]["files"] == ["errors.yaml"]
    assert reloaded[0]["changed_by"] == "file watch" and "errors.yaml" in reloaded[0]["owners"]
    refused = [r.fields for r in caplog.records if r.getMessage() == "alert rules reload refused"]  # type: ignore[attr-defined]
    assert refused[0]["problems"] == [
        f"{folder / 'broken.yaml'}: rules::0::signal: unknown signal 'nope' (see docs/alerting.md for the list)"
    ]


def test_invalid_rules_fail_start_up(tmp_path: Path) -> None:
    folder = tmp_path / "alerts"
    folder.mkdir()
    processor = build({"rules_dir": str(folder)})
    (folder / "x.yaml").write_text(
        "rules:\n  - {name: X, signal: error_rate, window: 90s, detector: {type: ewma}}\n"
    )
    with pytest.raises(ComponentError, match="window must be a multiple of evaluation_interval"):
        processor.start(make_host())


def test_config_problems_name_the_key_path(tmp_path: Path) -> None:
    folder = tmp_path / "alerts"
    folder.mkdir()
    (folder / "x.yaml").write_text("rules:\n  - {name: X, signal: nope, detector: {type: ewma}}\n")
    text = f"""
receivers: {{otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}}}}}
processors:
  anomaly:
    rules_dir: {folder}
    evaluation_interval: 1m
    pagerduty: {{routing_key: ""}}
exporters: {{debug: {{}}}}
service: {{pipelines: {{traces: {{receivers: [otlp], processors: [anomaly], exporters: [debug]}}}}}}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    assert info.value.problems == [
        "c.yaml: processors::anomaly::pagerduty::routing_key: String should have at least 1 character, got ''"
    ]
    text = text.replace('pagerduty: {routing_key: ""}', "group_by: [service.name]")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    assert info.value.problems == [
        f"c.yaml: processors::anomaly::rules_dir: {folder / 'x.yaml'}: rules::0::signal: "
        "unknown signal 'nope' (see docs/alerting.md for the list)"
    ]


def test_quality_and_thumbs_down_are_read_from_the_store_as_deltas() -> None:
    from collector.processors.anomaly import _StoreSignals

    host = make_host()
    store = shared_store(host)
    scores = store.histogram(
        m.OTEL_LLM_EVALUATION_SCORE, (attrs.GEN_AI_EVALUATION_NAME, attrs.GEN_AI_REQUEST_MODEL)
    )
    feedback = store.counter(
        m.OTEL_LLM_FEEDBACK,
        (attrs.OTEL_LLM_FEEDBACK_KIND, attrs.OTEL_LLM_FEEDBACK_POLARITY, attrs.GEN_AI_REQUEST_MODEL),
    )
    store.register_resource(("chat",), (("service.name", "chat"),))
    now = time.time_ns()
    reader = _StoreSignals(host)
    group = {"service_name": "chat", "gen_ai_request_model": "gpt-4o"}
    scores.record_many([((("chat",), ("relevance", "gpt-4o")), 0.9)] * 4, now)
    feedback.add((("chat",), ("thumbs", "positive", "gpt-4o")), 3.0, now)
    assert reader.read("quality_score", group, 60.0) is None  # the first read is the baseline
    assert reader.read("thumbs_down_rate", group, 60.0) is None
    scores.record_many([((("chat",), ("relevance", "gpt-4o")), 0.4)] * 2, now)
    scores.record_many([((("chat",), ("relevance", "other")), 0.0)] * 5, now)  # another group
    feedback.add((("chat",), ("thumbs", "negative", "gpt-4o")), 1.0, now)
    feedback.add((("chat",), ("thumbs", "positive", "gpt-4o")), 1.0, now)
    quality = reader.read("quality_score", group, 120.0)
    assert quality is not None and (quality.value, quality.n) == (pytest.approx(0.4), 2)
    assert reader.read("quality_score", group, 120.0) == quality  # same window: same answer
    thumbs = reader.read("thumbs_down_rate", group, 120.0)
    assert thumbs is not None and (thumbs.value, thumbs.n) == (0.5, 2)


def test_in_a_running_collector_health_reads_the_prometheus_endpoint(tmp_path: Path) -> None:
    """OTLP/HTTP in, anomaly processor, prometheus exporter; `otel-llm health` prints the table."""
    import io

    import httpx2

    from collector.alerting.health import health_main
    from collector.service import Service
    from tests.collector.conftest import free_port, receiver_ports

    port = free_port()
    text = f"""
receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:0"}}}}}}}}
processors: {{anomaly: {{rules_dir: {rules_dir(tmp_path, "errors.yaml")}}}}}
exporters: {{prometheus: {{endpoint: "127.0.0.1:{port}"}}}}
service:
  telemetry: {{metrics: {{enabled: false}}}}
  pipelines: {{traces: {{receivers: [otlp], processors: [anomaly], exporters: [prometheus]}}}}
"""
    service = Service(parse_config(text, "<test>"))
    service.start()
    try:
        _, http_port = receiver_ports(service)
        now = time.time()
        minute = now - now % 60
        # A minute of traffic that ended two minutes ago, half of it failing; the next span closes it.
        spans = [(minute - 120 + i, _obs(error=i % 2 == 0)) for i in range(40)] + [(now, _obs())]
        response = httpx2.post(
            f"http://127.0.0.1:{http_port}/v1/traces",
            content=batch_for(spans).request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=5,
        )
        assert response.status_code == 200
        processor = service.component(Kind.PROCESSOR, "anomaly")
        assert [(t.rule, t.state.value) for t in processor.transitions][:1] == [("LLMErrorBurst", "firing")]
        out, err = io.StringIO(), io.StringIO()
        assert health_main(["--endpoint", f"127.0.0.1:{port}"], out, err) == 0, err.getvalue()
    finally:
        service.shutdown(2)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["SERVICE", "MODEL", "SCORE"]
    assert lines[1].split()[:2] == ["chat", "gpt-4o"]
    assert any(line.split()[:3] == ["LLMErrorBurst", "firing", "warning"] for line in lines[3:])


# -- state_file: open alerts survive a restart ------------------------------------------------------------

ERRORS_RULE = (
    "rules:\n"
    "  - {name: Errors, signal: error_rate, min_samples: 1, severity: warning,\n"
    "     detector: {type: threshold, above: 0.5}}\n"
)


def _minute(processor: AnomalyProcessor, minute: int, error: bool) -> None:
    from collector.alerting.signals import Observation

    t = START + minute * 60 + 1
    processor.process(
        batch_for([(t, Observation(duration_s=1.0, is_error=error, error_type="500", tokens=10, cost=0.001))])
    )


def _with_state(tmp_path: Path, state: Path, endpoints: Recorder) -> tuple[Path, dict[str, Any]]:
    """A rules folder holding ERRORS_RULE, and a config keeping alert state in ``state``, paging ``/hook``."""
    folder = tmp_path / "alerts"
    folder.mkdir()
    (folder / "errors.yaml").write_text(ERRORS_RULE)
    config = {
        "rules_dir": str(folder),
        "state_file": str(state),
        "webhooks": [{"url": endpoints.url + "/hook"}],
        "reload_interval": "0s",
    }
    return folder, config


def test_state_file_carries_a_firing_alert_over_a_restart(tmp_path: Path, endpoints: Recorder) -> None:
    state = tmp_path / "state" / "alerts.json"
    state.parent.mkdir()
    _, config = _with_state(tmp_path, state, endpoints)

    first = build(config)
    first.start(make_host())
    try:
        for minute in range(3):
            _minute(first, minute, error=True)
        assert [(t.rule, t.state.value) for t in first.transitions] == [("Errors", "firing")]
        assert [h.json()["status"] for h in endpoints.wait_for(1, path="/hook")] == ["firing"]
    finally:
        first.shutdown(5)
    saved = json.loads(state.read_text())
    (entry,) = saved["alerts"]
    assert (entry["rule"], entry["state"], entry["severity"]) == ("Errors", "firing", "warning")
    assert entry["labels"] == {"service_name": "chat", "gen_ai_request_model": "gpt-4o"}
    assert entry["last_notification"]["status"] == "firing"
    assert not list(state.parent.glob(".*.tmp"))  # written via a temporary file, renamed over

    second = build(config)
    second.start(make_host())
    try:
        assert [(rule, state.value) for rule, _, state, _ in second.evaluator.firing()] == [
            ("Errors", "firing")
        ]
        for minute in range(3, 6):  # still failing: no second page
            _minute(second, minute, error=True)
        assert second.transitions == []
        for minute in range(6, 9):  # recovers: one resolve
            _minute(second, minute, error=False)
        assert [(t.rule, t.state.value) for t in second.transitions] == [("Errors", "inactive")]
        endpoints.wait_for(2, path="/hook")
        time.sleep(0.3)  # nothing else arrives
        hooks = endpoints.wait_for(2, path="/hook")
    finally:
        second.shutdown(5)
    assert [h.json()["status"] for h in hooks] == ["firing", "resolved"]
    assert hooks[0].json()["id"] == hooks[1].json()["id"]  # the resolve closes the first page
    assert json.loads(state.read_text())["alerts"] == []


def test_state_file_resolves_alerts_of_a_removed_rule_and_survives_garbage(
    tmp_path: Path, endpoints: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "alerts.json"
    folder, config = _with_state(tmp_path, state, endpoints)
    first = build(config)
    first.start(make_host())
    try:
        for minute in range(3):
            _minute(first, minute, error=True)
        endpoints.wait_for(1, path="/hook")
    finally:
        first.shutdown(5)

    (folder / "errors.yaml").write_text(ERRORS_RULE.replace("Errors", "Renamed"))
    second = build(config)
    second.start(make_host())
    try:
        hooks = endpoints.wait_for(2, path="/hook")
        assert second.evaluator is not None and second.evaluator.firing() == []
    finally:
        second.shutdown(5)
    assert [(h.json()["status"], h.json()["rule"]) for h in hooks] == [
        ("firing", "Errors"),
        ("resolved", "Errors"),
    ]

    state.write_text("{not json")
    caplog.set_level(logging.ERROR, logger="otel_llm.collector.processors.anomaly")
    third = build(config)
    third.start(make_host())  # an unreadable file is logged, not fatal
    third.shutdown(1)
    assert "alert state not restored" in caplog.text
    assert json.loads(state.read_text())["alerts"] == []  # replaced by a good document at shutdown
