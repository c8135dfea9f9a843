"""Every registered factory: its default config validates (or needs only its required keys), it creates
without I/O, and shutdown is safe before start, after start, and twice."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import ValidationError

from collector.component import ComponentId, CreateSettings, Factory, Host, Kind, Signal, factories
from collector.service import _StatusHolder
from collector.telemetry import SelfTelemetry

# The least config each type needs beyond its defaults (required keys), with loopback/free ports so the
# test never collides with a running collector.
REQUIRED: dict[tuple[Kind, str], dict[str, Any]] = {
    (Kind.RECEIVER, "otlp"): {
        "protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    },
    (Kind.EXPORTER, "otlp"): {"endpoint": "127.0.0.1:9", "tls": {"insecure": True}},
    (Kind.EXPORTER, "otlp_grpc"): {"endpoint": "127.0.0.1:9", "tls": {"insecure": True}},
    (Kind.EXPORTER, "otlp_http"): {"endpoint": "http://127.0.0.1:9"},
    (Kind.PROCESSOR, "memory_limiter"): {"limit_mib": 100_000},
    (Kind.EXTENSION, "health_check"): {"endpoint": "127.0.0.1:0"},
}
# Types whose start needs more than a bare host (other engineers' components may add entries here).
START_SKIPPED: set[tuple[Kind, str]] = set()


def _cases() -> list[Any]:
    return [
        pytest.param(kind, name, factory, id=f"{kind.value}:{name}")
        for kind, by_name in factories().items()
        for name, factory in sorted(by_name.items())
    ]


def _config(kind: Kind, name: str, factory: Factory) -> Any:
    """The type's config from REQUIRED, or its defaults; None when it needs required keys we do not know."""
    raw = REQUIRED.get((kind, name))
    if raw is None:
        try:
            config = factory.config_type.model_validate({})
        except ValidationError as exc:
            # Allowed: the defaults lack only required keys (anything else is a broken default).
            assert {error["type"] for error in exc.errors()} == {"missing"}, str(exc)
            return None
    else:
        config = factory.config_type.model_validate(raw)
    if raw is None and config.problems():
        return None  # cross-field "one of ... is required" checks, like missing keys
    assert config.problems() == [], f"{kind.value}::{name}: {config.problems()}"
    return config


def _settings(kind: Kind, name: str, telemetry: SelfTelemetry) -> CreateSettings:
    return CreateSettings(
        id=ComponentId(name), kind=kind, logger=logging.getLogger(f"test.{name}"), telemetry=telemetry
    )


@pytest.mark.parametrize(("kind", "name", "factory"), _cases())
def test_default_config_create_and_lifecycle(kind: Kind, name: str, factory: Factory) -> None:
    assert factory.type_name == name
    assert factory.signals and factory.signals <= frozenset(Signal)
    config = _config(kind, name, factory)
    if config is None:
        pytest.skip("needs required keys; add them to REQUIRED to run its lifecycle")
    telemetry = SelfTelemetry("test")
    host = Host(telemetry=telemetry)
    host.shared["collector.service.status"] = _StatusHolder()
    component = factory.create(config, _settings(kind, name, telemetry))
    component.shutdown(0.5)  # before start
    if (kind, name) in START_SKIPPED:
        return
    if kind is Kind.RECEIVER:
        component.bind({})
    for _ in range(2):  # start/stop twice
        component.start(host)
        component.shutdown(1.0)
        component.shutdown(1.0)  # and twice


def test_the_core_types_are_registered() -> None:
    registered = {(kind, name) for kind, by_name in factories().items() for name in by_name}
    assert set(REQUIRED) <= registered
    assert (Kind.EXPORTER, "debug") in registered
