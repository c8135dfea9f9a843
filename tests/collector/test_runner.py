"""collector.runner: the instance id is stable across restarts (no pid) and distinct per worker."""

from __future__ import annotations

import socket

import pytest

from collector.configuration import parse_config
from collector.errors import ConfigError
from collector.runner import instance_id

CONFIG = """
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}}}
exporters:
  debug: {{}}
service:
  {extra}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"""


def test_default_instance_id_is_the_hostname_per_worker() -> None:
    config = parse_config(CONFIG.format(extra=""), "<test>")
    assert config.service.instance_id is None
    host = socket.gethostname()
    assert instance_id(config.service.instance_id, None) == host
    assert instance_id(config.service.instance_id, 2) == f"{host}-w2"
    # The same on every call: nothing process-specific, so a restart keeps its series.
    assert instance_id(None, 0) == instance_id(None, 0)


def test_configured_instance_id() -> None:
    config = parse_config(CONFIG.format(extra="instance_id: otel-llm-0"), "<test>")
    assert instance_id(config.service.instance_id, None) == "otel-llm-0"
    assert instance_id(config.service.instance_id, 1) == "otel-llm-0-w1"


@pytest.mark.parametrize("value", ['""', '"two words"'])
def test_instance_id_must_be_one_word(value: str) -> None:
    with pytest.raises(ConfigError, match="service::instance_id"):
        parse_config(CONFIG.format(extra=f"instance_id: {value}"), "<test>")


def test_each_worker_gets_its_own_self_telemetry_port() -> None:
    """Workers cannot share the self-telemetry port (one registry each): worker i uses port + i."""
    from collector.runner import _worker_config

    config = parse_config(
        CONFIG.format(extra='telemetry: {metrics: {endpoint: "127.0.0.1:8888"}}\n  workers: 2'), "<test>"
    )
    assert _worker_config(config, 0).service.telemetry.metrics.endpoint == "127.0.0.1:8888"
    assert _worker_config(config, 1).service.telemetry.metrics.endpoint == "127.0.0.1:8889"
    assert _worker_config(config, 1).service.workers == 2
    any_port = parse_config(CONFIG.format(extra='telemetry: {metrics: {endpoint: "127.0.0.1:0"}}'), "<test>")
    assert _worker_config(any_port, 1).service.telemetry.metrics.endpoint == "127.0.0.1:0"
