"""Fixtures for the GenAI processors: a host with a fresh store, processors built from YAML-like dicts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collector.component import ComponentId, CreateSettings, Host, Kind
from collector.metrics import MetricStore, shared_store
from collector.processors.cost import FACTORY as COST
from collector.processors.genai_metrics import FACTORY as GENAI_METRICS
from collector.telemetry import SelfTelemetry


def make_host(instance: str = "test-instance") -> Host:
    host = Host(telemetry=SelfTelemetry(instance))
    host.shared["collector.service.instance_id"] = instance
    return host


def make(factory: Any, host: Host, **config: Any) -> Any:
    settings = CreateSettings(
        id=ComponentId(factory.type_name),
        kind=Kind.PROCESSOR,
        logger=logging.getLogger("test"),
        telemetry=host.telemetry,
    )
    component = factory.create(factory.config_type.model_validate(config), settings)
    component.start(host)
    return component


@pytest.fixture
def host() -> Host:
    return make_host()


@pytest.fixture
def store(host: Host) -> MetricStore:
    return shared_store(host)


@pytest.fixture
def genai_metrics(host: Host) -> Callable[..., Any]:
    return lambda **config: make(GENAI_METRICS, host, **config)


@pytest.fixture
def cost(host: Host) -> Callable[..., Any]:
    return lambda **config: make(COST, host, **config)


def series(store: MetricStore, name: str) -> dict[tuple[tuple[str, object], ...], Any]:
    """Points of one metric by their non-empty attributes (resource left out)."""
    out: dict[tuple[tuple[str, object], ...], Any] = {}
    for snap in store.snapshot():
        if snap.name != name:
            continue
        for point in snap.points:
            key = tuple((k, v) for k, v in point.attributes if v not in ("", None))
            out[key] = point
    return out


def _matching(store: MetricStore, name: str, where: dict[str, object] | None) -> Iterator[Any]:
    """Points of one metric whose attributes include every pair of ``where``."""
    for key, point in series(store, name).items():
        attributes = dict(key)
        if all(attributes.get(k) == v for k, v in (where or {}).items()):
            yield point


def total(store: MetricStore, name: str, where: dict[str, object] | None = None) -> float:
    """Sum of counter values, or of histogram sums, over the points matching ``where``."""
    return sum((point.total if point.count else point.value for point in _matching(store, name, where)), 0.0)


def count(store: MetricStore, name: str, where: dict[str, object] | None = None) -> int:
    """Sum of histogram counts over the points matching ``where``."""
    return sum(point.count for point in _matching(store, name, where))
