"""The ``pii`` processor: spans, span events and log records redacted in place; config checks; counters."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector.component import ComponentId, CreateSettings, Host, Kind
from collector.configuration import parse_config
from collector.data import LogsBatch, TraceBatch
from collector.errors import ConfigError
from collector.processors.pii import FACTORY, REDACTOR_KEY, PiiProcessor, PiiProcessorConfig
from collector.telemetry import SelfTelemetry
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import events

SECRET_KEY = "0123456789abcdef-test"

MESSAGES = json.dumps(
    [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "I'm jane@corp.example, call me on +44 20 7946 0958"}],
        }
    ]
)


def make(config: dict[str, Any] | None = None) -> tuple[PiiProcessor, SelfTelemetry, Host]:
    telemetry = SelfTelemetry("test")
    settings = CreateSettings(
        id=ComponentId("pii"), kind=Kind.PROCESSOR, logger=logging.getLogger("test.pii"), telemetry=telemetry
    )
    processor = FACTORY.create(PiiProcessorConfig.model_validate(config or {}), settings)
    host = Host(telemetry=telemetry)
    processor.start(host)
    return processor, telemetry, host


def kv(key: str, value: Any) -> KeyValue:
    out = KeyValue(key=key)
    if isinstance(value, str):
        out.value.string_value = value
    elif isinstance(value, int):
        out.value.int_value = value
    elif isinstance(value, dict):
        for k, v in value.items():
            out.value.kvlist_value.values.append(kv(k, v))
    return out


def trace_batch(
    span_attributes: list[KeyValue], event_name: str = "", event_attributes: tuple[KeyValue, ...] = ()
) -> TraceBatch:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(kv("service.name", "checkout"))
    span = resource_spans.scope_spans.add().spans.add()
    span.name = "chat gpt-4o"
    span.kind = Span.SPAN_KIND_CLIENT
    span.attributes.extend(span_attributes)
    if event_name:
        span_event = span.events.add()
        span_event.name = event_name
        span_event.attributes.extend(event_attributes)
    return TraceBatch(request)


def attributes_of(batch: TraceBatch) -> dict[str, Any]:
    span = batch.request.resource_spans[0].scope_spans[0].spans[0]
    return {item.key: item.value for item in span.attributes}


def count(telemetry: SelfTelemetry, kind: str) -> float:
    value = telemetry.registry.get_sample_value(
        "otel_llm_pii_redactions_total", {"processor": "pii", "otel_llm_pii_kind": kind}
    )
    return value or 0.0


def test_content_attribute_is_redacted_as_json_and_counted() -> None:
    processor, telemetry, _ = make()
    batch = trace_batch([kv(attrs.GEN_AI_INPUT_MESSAGES, MESSAGES), kv(attrs.GEN_AI_REQUEST_MODEL, "gpt-4o")])
    out = processor.process(batch)
    assert out is batch
    values = attributes_of(batch)
    document = json.loads(values[attrs.GEN_AI_INPUT_MESSAGES].string_value)
    assert document[0]["parts"][0]["content"] == "I'm <EMAIL>, call me on <PHONE>"
    assert values[attrs.GEN_AI_REQUEST_MODEL].string_value == "gpt-4o"
    assert (count(telemetry, "email"), count(telemetry, "phone")) == (1.0, 1.0)


def test_other_string_attributes_only_when_asked() -> None:
    processor, _, _ = make()
    batch = trace_batch([kv("user.note", "a@b.io")])
    processor.process(batch)
    assert attributes_of(batch)["user.note"].string_value == "a@b.io"
    processor, _, _ = make({"all_string_attributes": True})
    batch = trace_batch([kv("user.note", "a@b.io"), kv("http.status", 200)])
    processor.process(batch)
    assert attributes_of(batch)["user.note"].string_value == "<EMAIL>"
    assert attributes_of(batch)["http.status"].int_value == 200


def test_legacy_flattened_and_event_content() -> None:
    processor, telemetry, _ = make()
    batch = trace_batch(
        [kv("gen_ai.prompt.0.content", "my card is 4111 1111 1111 1111")],
        event_name=events.GEN_AI_USER_MESSAGE,
        event_attributes=(kv("content", "ssn 123-45-6789"), kv("nested", {"inner": "10.20.30.40"})),
    )
    processor.process(batch)
    span = batch.request.resource_spans[0].scope_spans[0].spans[0]
    assert span.attributes[0].value.string_value == "my card is <CREDIT_CARD>"
    assert span.events[0].attributes[0].value.string_value == "ssn <US_SSN>"
    assert span.events[0].attributes[1].value.kvlist_value.values[0].value.string_value == "<IP_ADDRESS>"
    assert count(telemetry, "us_ssn") == 1.0


def test_drop_mode_removes_attributes_with_findings() -> None:
    processor, _, _ = make({"mode": "drop"})
    clean = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hello"}]}])
    batch = trace_batch([kv(attrs.GEN_AI_INPUT_MESSAGES, MESSAGES), kv(attrs.GEN_AI_OUTPUT_MESSAGES, clean)])
    processor.process(batch)
    assert set(attributes_of(batch)) == {attrs.GEN_AI_OUTPUT_MESSAGES}


def test_hash_mode_joins_across_spans() -> None:
    processor, _, _ = make({"mode": "hash", "hash_key": SECRET_KEY})
    first = trace_batch([kv("gen_ai.prompt.0.content", "from Jane@Corp.example")])
    second = trace_batch([kv("gen_ai.prompt.0.content", "jane@corp.example wrote")])
    processor.process(first)
    processor.process(second)
    token_a = attributes_of(first)["gen_ai.prompt.0.content"].string_value.split()[-1]
    token_b = attributes_of(second)["gen_ai.prompt.0.content"].string_value.split()[0]
    assert token_a == token_b and token_a.startswith("<EMAIL:")


def test_allow_and_deny_lists() -> None:
    processor, _, _ = make(
        {"all_string_attributes": True, "allow_attributes": ["server.*"], "deny_attributes": ["enduser.id"]}
    )
    batch = trace_batch(
        [kv("server.address", "10.1.2.3"), kv("enduser.id", "u-1"), kv("client.address", "10.1.2.3")]
    )
    processor.process(batch)
    values = attributes_of(batch)
    assert values["server.address"].string_value == "10.1.2.3"
    assert "enduser.id" not in values
    assert values["client.address"].string_value == "<IP_ADDRESS>"


def test_log_bodies_and_genai_log_events() -> None:
    processor, telemetry, _ = make()
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    text = LogRecord(body=AnyValue(string_value="login from 198.51.100.7 by a@b.io"))
    structured = LogRecord(event_name=events.GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS)
    structured.attributes.append(kv(attrs.GEN_AI_INPUT_MESSAGES, MESSAGES))
    structured.attributes.append(kv("session.note", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t"))
    structured.body.kvlist_value.values.append(kv("content", "Bearer abcDEF0123456789xyz"))
    records.extend([text, structured])
    processor.process(LogsBatch(request))
    assert records[0].body.string_value == "login from <IP_ADDRESS> by <EMAIL>"
    assert "jane" not in records[1].attributes[0].value.string_value
    assert records[1].attributes[1].value.string_value == "<API_KEY>"
    assert records[1].body.kvlist_value.values[0].value.string_value == "Bearer <BEARER_TOKEN>"
    assert count(telemetry, "bearer_token") == 1.0


def test_shared_redactor_for_the_judge() -> None:
    processor, telemetry, host = make({"mode": "drop"})
    redact = host.shared[REDACTOR_KEY]
    assert redact("write to a@b.io") == "write to <EMAIL>"  # drop is mask for text that must go out
    assert json.loads(redact(MESSAGES))[0]["parts"][0]["content"] == "I'm <EMAIL>, call me on <PHONE>"
    assert count(telemetry, "email") == 2.0
    processor.shutdown(1.0)
    processor.shutdown(1.0)
    assert REDACTOR_KEY not in host.shared


def test_lifecycle_shutdown_before_start() -> None:
    telemetry = SelfTelemetry("t")
    settings = CreateSettings(ComponentId("pii"), Kind.PROCESSOR, logging.getLogger("t"), telemetry)
    processor = FACTORY.create(PiiProcessorConfig(), settings)
    processor.shutdown(1.0)


def test_never_logs_values(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        processor, _, _ = make({"all_string_attributes": True})
        processor.process(trace_batch([kv(attrs.GEN_AI_INPUT_MESSAGES, MESSAGES)]))
    assert "jane" not in caplog.text and "7946" not in caplog.text


PIPELINE = """
receivers: {{fake: {{}}}}
exporters: {{fake: {{}}}}
processors:
  pii:
{body}
service:
  pipelines:
    traces: {{receivers: [fake], processors: [pii], exporters: [fake]}}
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            "    mode: hash",
            "<t>: processors::pii::hash_key: required when mode is hash",
            id="hash-without-key",
        ),
        pytest.param(
            "    mode: hash\n    hash_key: short",
            "<t>: processors::pii::hash_key: expected at least 16 characters, got 5",
            id="short-key",
        ),
        pytest.param(
            "    custom: [{name: x, pattern: '(unclosed'}]",
            "<t>: processors::pii::custom::0::pattern: invalid regular expression: missing ), unterminated subpattern at position 0",
            id="bad-regex",
        ),
        pytest.param(
            "    custom: [{name: email, pattern: 'x'}]",
            "<t>: processors::pii::custom::0::name: 'email' is already a kind",
            id="name-clash",
        ),
        pytest.param(
            "    custom: [{name: x, pattern: 'a*'}]",
            "<t>: processors::pii::custom::0::pattern: matches the empty string",
            id="empty-match",
        ),
        pytest.param(
            "    deny_attributes: ['a*b']",
            "<t>: processors::pii::deny_attributes::0: expected a name or a prefix ending in *, got 'a*b'",
            id="bad-glob",
        ),
    ],
)
def test_config_problems(body: str, message: str) -> None:
    registry = _registry()
    with pytest.raises(ConfigError) as info:
        parse_config(PIPELINE.format(body=body), "<t>", environ={}, registry=registry)
    assert info.value.problems == [message]


def test_hash_key_from_env_is_secret() -> None:
    text = PIPELINE.format(body="    mode: hash\n    hash_key: ${env:PII_KEY}")
    config = parse_config(text, "<t>", environ={"PII_KEY": SECRET_KEY}, registry=_registry())
    spec = config.components[Kind.PROCESSOR]["pii"].config
    assert SECRET_KEY not in repr(spec)


def _registry() -> dict[Kind, dict[str, Any]]:
    from collector.component import ComponentConfig, Factory

    class Empty(ComponentConfig):
        pass

    fake_receiver = Factory(Kind.RECEIVER, "fake", Empty, lambda c, s: None)
    fake_exporter = Factory(Kind.EXPORTER, "fake", Empty, lambda c, s: None)
    return {
        Kind.RECEIVER: {"fake": fake_receiver},
        Kind.PROCESSOR: {"pii": FACTORY},
        Kind.EXPORTER: {"fake": fake_exporter},
        Kind.EXTENSION: {},
    }


def test_oversized_values_and_batch_budget_fail_closed() -> None:
    processor, telemetry, _ = make({"max_value_kib": 1, "max_scan_mib_per_batch": 0.001})
    batch = trace_batch(
        [
            kv("gen_ai.prompt.0.content", "x" * 2000),  # over 1 KiB: not scanned, replaced
            kv("gen_ai.prompt.1.content", "a@b.io " + "y" * 900),  # scanned (budget 1048 chars)
            kv("gen_ai.prompt.2.content", "z" * 500),  # over the batch budget: replaced
        ]
    )
    processor.process(batch)
    values = attributes_of(batch)
    assert values["gen_ai.prompt.0.content"].string_value == "<UNSCANNED>"
    assert values["gen_ai.prompt.1.content"].string_value.startswith("<EMAIL> y")
    assert values["gen_ai.prompt.2.content"].string_value == "<UNSCANNED>"
    assert count(telemetry, "unscanned") == 2.0
