"""Builds the components a config names, wires the pipelines, and runs them until told to stop.

Start order follows the data backwards (extensions, exporters, processors, receivers) so nothing is
accepted before it can be delivered; shutdown goes forwards (receivers first, so no new data arrives,
then processors, then exporters, which flush their queues, then extensions).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client import start_http_server

from collector._self_otlp import SelfTelemetryPusher
from collector.component import Component, Consumer, CreateSettings, Host, Kind, Signal
from collector.configuration import CollectorConfig, ComponentSpec
from collector.errors import ComponentError
from collector.logs import event, get_logger
from collector.pipeline import FanOut, ProcessorStage
from collector.telemetry import SelfTelemetry

__all__ = ["Service", "ServiceStatus", "split_endpoint"]


class ServiceStatus(StrEnum):
    """Lifecycle states, as the health endpoint reports them."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class _Built:
    receivers: dict[str, Any] = field(default_factory=dict)
    exporters: dict[str, Any] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)
    # (pipeline id, processor id) -> processor instance
    processors: dict[tuple[str, str], Any] = field(default_factory=dict)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` → (host, port); IPv6 hosts in brackets. Raises ``ValueError`` when malformed."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected host:port, got {endpoint!r}")
    return host.strip("[]"), int(port)


class Service:
    """One running collector: components, pipelines and self-telemetry."""

    def __init__(self, config: CollectorConfig, instance_id: str | None = None) -> None:
        self.config = config
        self.instance_id = instance_id or str(uuid.uuid4())
        self.telemetry = SelfTelemetry(self.instance_id)
        self.host = Host(telemetry=self.telemetry)
        self.host.shared["collector.service.status"] = self.status_holder = _StatusHolder()
        self.host.shared["collector.service.instance_id"] = self.instance_id
        self.logger = get_logger("service")
        self._built = _Built()
        self._metrics_server: Any = None
        self._self_pusher: SelfTelemetryPusher | None = None
        self._stopped = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._build()

    @property
    def status(self) -> ServiceStatus:
        """Current lifecycle state."""
        return self.status_holder.status

    def _settings(self, spec: ComponentSpec, kind: Kind) -> CreateSettings:
        return CreateSettings(
            id=spec.id, kind=kind, logger=get_logger(f"{kind.value}.{spec.id}"), telemetry=self.telemetry
        )

    def _create(self, spec: ComponentSpec, kind: Kind) -> Any:
        return spec.factory.create(spec.config, self._settings(spec, kind))

    def _build(self) -> None:
        components = self.config.components
        used: dict[Kind, set[str]] = defaultdict(set)
        for pipeline in self.config.pipelines:
            used[Kind.RECEIVER].update(pipeline.receivers)
            used[Kind.EXPORTER].update(pipeline.exporters)
        for name in self.config.service.extensions:
            self._built.extensions[name] = self._create(components[Kind.EXTENSION][name], Kind.EXTENSION)
        for name in sorted(used[Kind.EXPORTER]):
            self._built.exporters[name] = self._create(components[Kind.EXPORTER][name], Kind.EXPORTER)
        for name in sorted(used[Kind.RECEIVER]):
            self._built.receivers[name] = self._create(components[Kind.RECEIVER][name], Kind.RECEIVER)

        # Each pipeline: exporters fan-out <- processors (last to first) <- pipeline head.
        heads: dict[str, dict[Signal, list[Consumer]]] = defaultdict(lambda: defaultdict(list))
        for pipeline in self.config.pipelines:
            consumer: Consumer = FanOut([self._built.exporters[name] for name in pipeline.exporters])
            for name in reversed(pipeline.processors):
                processor = self._create(components[Kind.PROCESSOR][name], Kind.PROCESSOR)
                self._built.processors[(pipeline.id, name)] = processor
                consumer = ProcessorStage(
                    processor, self.telemetry.for_processor(name, pipeline.id, pipeline.signal), consumer
                )
            for name in pipeline.receivers:
                heads[name][pipeline.signal].append(consumer)
        for name, receiver in self._built.receivers.items():
            receiver.bind({signal: FanOut(consumers, copy=True) for signal, consumers in heads[name].items()})
        self.host.extensions = dict(self._built.extensions)

    def start(self) -> None:
        """Start everything; on a failure, stop what was started and raise :class:`ComponentError`."""
        self.status_holder.status = ServiceStatus.STARTING
        started: list[tuple[str, Component]] = []
        order: list[tuple[str, Component]] = [
            *((f"extensions::{n}", c) for n, c in self._built.extensions.items()),
            *((f"exporters::{n}", c) for n, c in self._built.exporters.items()),
            *((f"processors::{n}[{p}]", c) for (p, n), c in self._built.processors.items()),
            *((f"receivers::{n}", c) for n, c in self._built.receivers.items()),
        ]
        try:
            self._start_self_metrics()
            for name, component in order:
                try:
                    component.start(self.host)
                except ComponentError:
                    raise
                except Exception as exc:
                    raise ComponentError(f"{name}: failed to start: {exc}") from exc
                started.append((name, component))
        except Exception:
            for _, component in reversed(started):
                _quietly(component.shutdown, 1.0)
            self._stop_self_metrics()
            self.status_holder.status = ServiceStatus.STOPPED
            raise
        self.status_holder.status = ServiceStatus.READY
        event(
            self.logger,
            logging.INFO,
            "collector started",
            config=self.config.source,
            pipelines=",".join(p.id for p in self.config.pipelines),
            receivers=",".join(self._built.receivers),
            exporters=",".join(self._built.exporters),
            instance=self.instance_id,
        )

    def _start_self_metrics(self) -> None:
        settings = self.config.service.telemetry.metrics
        if settings.otlp is not None:
            self._self_pusher = SelfTelemetryPusher(
                self.telemetry.registry,
                settings.otlp.endpoint,
                settings.otlp.interval,
                settings.otlp.headers,
                self.instance_id,
            )
            self._self_pusher.start()
        if not settings.enabled:
            return
        host, port = split_endpoint(settings.endpoint)
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.telemetry.registry)
        except OSError as exc:
            raise ComponentError(
                f"service::telemetry::metrics: cannot listen on {settings.endpoint}: {exc}"
            ) from exc
        self._metrics_server = server

    def _stop_self_metrics(self) -> None:
        if self._self_pusher is not None:
            self._self_pusher.shutdown(5.0)
            self._self_pusher = None
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Stop receivers, drain processors, flush exporters; within ``timeout_s`` overall. Idempotent."""
        with self._shutdown_lock:
            if self.status_holder.status is ServiceStatus.STOPPED:
                return
            self.status_holder.status = ServiceStatus.STOPPING
            budget = self.config.service.shutdown_timeout if timeout_s is None else timeout_s
            deadline = time.monotonic() + budget
            event(self.logger, logging.INFO, "collector stopping", timeout_s=budget)
            groups: list[list[tuple[str, Any]]] = [
                [(f"receivers::{n}", c) for n, c in self._built.receivers.items()],
                [(f"processors::{n}", c) for (_, n), c in self._built.processors.items()],
                [(f"exporters::{n}", c) for n, c in self._built.exporters.items()],
                [(f"extensions::{n}", c) for n, c in self._built.extensions.items()],
            ]
            for group in groups:
                for name, component in group:
                    remaining = max(0.1, deadline - time.monotonic())
                    try:
                        component.shutdown(remaining)
                    except Exception as exc:
                        event(
                            self.logger,
                            logging.WARNING,
                            "component failed to shut down",
                            component=name,
                            error=str(exc),
                        )
            self._stop_self_metrics()
            self.status_holder.status = ServiceStatus.STOPPED
            self._stopped.set()
            event(self.logger, logging.INFO, "collector stopped")

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until :meth:`shutdown` finished; True if it did within ``timeout_s``."""
        return self._stopped.wait(timeout_s)

    def component(self, kind: Kind, name: str, pipeline: str | None = None) -> Any:
        """A built component by id (tests and the CLI use this); processors need their pipeline id."""
        if kind is Kind.PROCESSOR:
            if pipeline is None:
                matches = [c for (_, n), c in self._built.processors.items() if n == name]
                return matches[0]
            return self._built.processors[(pipeline, name)]
        return {
            Kind.RECEIVER: self._built.receivers,
            Kind.EXPORTER: self._built.exporters,
            Kind.EXTENSION: self._built.extensions,
        }[kind][name]


@dataclass
class _StatusHolder:
    """Shared mutable status so extensions (health) read the service's state without a reference to it."""

    status: ServiceStatus = ServiceStatus.STARTING
    refusing: bool = False
    reasons: dict[str, str] = field(default_factory=dict)


def _quietly(action: Callable[[float], object], timeout_s: float) -> None:
    try:
        action(timeout_s)
    except Exception:  # best effort while unwinding a failed start
        logging.getLogger(__name__).debug("ignored error during cleanup", exc_info=True)
