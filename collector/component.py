"""The component model: kinds, ids, factories and the lifecycle every component follows.

A component type lives in one module (``collector/processors/cost.py`` is type ``cost``) that defines a
typed config (:class:`ComponentConfig`), the component class and a module-level ``FACTORY``. The registry
discovers factories by importing every module of the ``receivers``, ``processors``, ``exporters`` and
``extensions`` packages, so adding a component means adding one module.

Lifecycle (called by :mod:`collector.service`, never concurrently):

- ``factory.create(config, settings)``: build the object; no I/O, no threads, no sockets.
- ``start(host)``: open sockets, start threads. Raise :class:`~collector.errors.ComponentError` on failure.
- ``shutdown(timeout_s)``: stop and flush within the timeout. Safe before ``start()`` and safe twice.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collector.data import Batch
    from collector.telemetry import SelfTelemetry

__all__ = [
    "Component",
    "ComponentConfig",
    "ComponentId",
    "Consumer",
    "CreateSettings",
    "Factory",
    "Host",
    "Kind",
    "Processor",
    "Receiver",
    "Signal",
    "factories",
]


class Kind(StrEnum):
    """The four kinds of component, named as the top-level config sections."""

    RECEIVER = "receivers"
    PROCESSOR = "processors"
    EXPORTER = "exporters"
    EXTENSION = "extensions"


class Signal(StrEnum):
    """The telemetry signals a pipeline carries."""

    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"


@dataclass(frozen=True, slots=True)
class ComponentId:
    """``type[/name]`` as written in the config: ``otlp``, ``otlp_http/backup``."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ComponentId:
        """Split ``type/name``; raise ``ValueError`` when either part is empty or malformed."""
        type_name, _, name = text.partition("/")
        if not type_name or (text.count("/") and not name) or not _is_identifier(type_name):
            raise ValueError(f"expected a component id of the form type or type/name, got {text!r}")
        return cls(type_name, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


def _is_identifier(text: str) -> bool:
    return all(ch.isalnum() or ch == "_" for ch in text) and text[0].isalpha()


class ComponentConfig(BaseModel):
    """Base of every component config: frozen, unknown keys rejected by the loader.

    Field constraints (``gt=0``, enums, ``Duration``) catch most mistakes; ``problems()`` adds checks
    across fields and returns every one as ``(key path below the component, message)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field problems; empty when the config is usable."""
        return []

    def missing_files(self, *keys: str) -> list[tuple[str, str]]:
        """For ``problems()``: ``(key, "no such file: <path>")`` for each of ``keys`` set to a path that is not a file."""
        out: list[tuple[str, str]] = []
        for key in keys:
            value = getattr(self, key)
            if value is not None and not Path(value).is_file():
                out.append((key, f"no such file: {value}"))
        return out


class Component(Protocol):
    """What the service needs from every component."""

    def start(self, host: Host) -> None: ...

    def shutdown(self, timeout_s: float) -> None: ...


class Consumer(Protocol):
    """Takes one batch; raises :class:`~collector.errors.RefusedError` to push back on the sender."""

    def consume(self, batch: Batch) -> None: ...


@runtime_checkable
class Receiver(Protocol):
    """A component that brings data in; the service binds one consumer per signal before ``start``."""

    def bind(self, consumers: Mapping[Signal, Consumer]) -> None: ...

    def start(self, host: Host) -> None: ...

    def shutdown(self, timeout_s: float) -> None: ...


@runtime_checkable
class Processor(Protocol):
    """One method over a batch: return it (changed or not), or ``None`` to drop all of it."""

    def process(self, batch: Batch) -> Batch | None: ...

    def start(self, host: Host) -> None: ...

    def shutdown(self, timeout_s: float) -> None: ...


@dataclass(frozen=True)
class CreateSettings:
    """What a factory gets besides its config."""

    id: ComponentId
    kind: Kind
    logger: logging.Logger
    telemetry: SelfTelemetry


@dataclass
class Host:
    """What a running component can reach: extensions, self-telemetry and shared state.

    ``shared`` is a registry of objects that components of several kinds use together (for example
    the derived-metric store that processors write and metrics exporters read). Keys are module
    names of the owner, so two features never collide.
    """

    telemetry: SelfTelemetry
    extensions: dict[str, Component] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)

    def get_shared(self, key: str, create: Callable[[], Any]) -> Any:
        """Return the shared object under ``key``, creating it once."""
        if key not in self.shared:
            self.shared[key] = create()
        return self.shared[key]


@dataclass(frozen=True)
class Factory:
    """Builds one component type; ``signals`` lists the pipelines it may sit in."""

    kind: Kind
    type_name: str
    config_type: type[ComponentConfig]
    create: Callable[[Any, CreateSettings], Any]
    signals: frozenset[Signal] = frozenset(Signal)
    description: str = ""

    _registry: ClassVar[dict[Kind, dict[str, Factory]] | None] = None


def factories() -> dict[Kind, dict[str, Factory]]:
    """Every built-in factory by kind and type name; modules are imported once, on first call."""
    if Factory._registry is None:
        registry: dict[Kind, dict[str, Factory]] = {kind: {} for kind in Kind}
        for kind in Kind:
            package = importlib.import_module(f"collector.{kind.value}")
            for module_info in pkgutil.iter_modules(package.__path__):
                if module_info.name.startswith("_"):
                    continue
                module = importlib.import_module(f"{package.__name__}.{module_info.name}")
                factory = getattr(module, "FACTORY", None)
                if isinstance(factory, Factory):
                    if factory.kind is not kind:
                        raise RuntimeError(
                            f"{module.__name__}: FACTORY.kind is {factory.kind}, expected {kind}"
                        )
                    registry[kind][factory.type_name] = factory
        Factory._registry = registry
    return Factory._registry
