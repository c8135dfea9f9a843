"""YAML → typed, validated configuration, with every mistake reported at once by its key path.

The file is shaped like the OpenTelemetry Collector's::

    receivers:  {otlp: {...}}
    processors: {genai_metrics: {...}, cost/eu: {...}}
    exporters:  {prometheus: {...}}
    extensions: {health_check: {...}}
    service:
      extensions: [health_check]
      pipelines:
        traces: {receivers: [otlp], processors: [genai_metrics], exporters: [debug]}

Each component's section is validated by its factory's config model; unknown keys, wrong types and
references to undefined components are errors that name the file, the key path (``::``-separated, as
the Collector prints them) and what was expected. ``${env:NAME}`` and ``${env:NAME:-default}`` expand
in every string value; ``$$`` is a literal ``$``. An unset variable without a default is an error,
rather than the Collector's silent empty string, because an empty endpoint or token is never meant.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from collector.component import ComponentConfig, ComponentId, Factory, Kind, Signal, factories
from collector.durations import Duration
from collector.errors import ConfigError

__all__ = [
    "CollectorConfig",
    "ComponentSpec",
    "PipelineSpec",
    "ServiceSettings",
    "expand_env",
    "load_config",
    "parse_config",
]

_ENV = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOP_LEVEL = ("receivers", "processors", "exporters", "extensions", "service")


class LogsSettings(ComponentConfig):
    """``service::telemetry::logs``."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged.")
    format: Literal["auto", "json", "text"] = Field(
        "auto", description="`json` lines, readable `text`, or `auto`: text on a terminal, JSON otherwise."
    )


class OtlpSelfTelemetrySettings(ComponentConfig):
    """``service::telemetry::metrics::otlp``: push the collector's own metrics over OTLP/HTTP."""

    endpoint: str = Field(
        description="OTLP/HTTP metrics URL, e.g. `http://127.0.0.1:4318/v1/metrics` (protobuf is sent)."
    )
    interval: Duration = Field(60.0, gt=0, description="How often the metrics are pushed.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers (e.g. a token).")

    def problems(self) -> list[tuple[str, str]]:
        if not self.endpoint.startswith(("http://", "https://")):
            return [("endpoint", f"expected an http:// or https:// URL, got {self.endpoint!r}")]
        return []


class MetricsSettings(ComponentConfig):
    """``service::telemetry::metrics``: where the collector exposes its own metrics."""

    enabled: bool = Field(True, description="Serve the collector's own metrics in Prometheus format.")
    endpoint: str = Field(
        "127.0.0.1:8888", description="host:port of the self-telemetry scrape endpoint (`/metrics`)."
    )
    otlp: OtlpSelfTelemetrySettings | None = Field(
        None, description="Also push the collector's own metrics over OTLP/HTTP (unset: don't)."
    )

    def problems(self) -> list[tuple[str, str]]:
        # The loader calls problems() on the top-level model only; nested settings report through it.
        return [] if self.otlp is None else [(f"otlp::{key}", msg) for key, msg in self.otlp.problems()]


class TelemetrySettings(ComponentConfig):
    """``service::telemetry``."""

    logs: LogsSettings = Field(default_factory=LogsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    def problems(self) -> list[tuple[str, str]]:
        return [(f"metrics::{key}", msg) for key, msg in self.metrics.problems()]


class PipelineSettings(ComponentConfig):
    """One entry of ``service::pipelines``."""

    receivers: list[str] = Field(min_length=1, description="Receiver ids feeding this pipeline.")
    processors: list[str] = Field(default_factory=list, description="Processor ids, applied in order.")
    exporters: list[str] = Field(min_length=1, description="Exporter ids, each gets every batch.")


class ServiceSettings(ComponentConfig):
    """The ``service`` section."""

    extensions: list[str] = Field(default_factory=list, description="Extension ids to start.")
    pipelines: dict[str, PipelineSettings] = Field(
        min_length=1, description="Pipelines by id: `traces`, `metrics`, `logs`, or `<signal>/<name>`."
    )
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    workers: int = Field(
        1, ge=1, le=64, description="Processes sharing the listening ports (SO_REUSEPORT); see README."
    )
    shutdown_timeout: Duration = Field(
        10.0, description="On SIGTERM, how long to drain pipelines and flush exporters before exiting."
    )
    instance_id: str | None = Field(
        None,
        min_length=1,
        pattern=r"^[^\s]+$",
        description="`otel_llm.instance.id` on every derived series: keep it stable across restarts so a "
        "restart continues the same Prometheus series. Default: the hostname (the pod name under a "
        "StatefulSet); with `workers` > 1 each worker appends `-w<index>` (to the default or this value).",
    )

    def problems(self) -> list[tuple[str, str]]:
        return [(f"telemetry::{key}", msg) for key, msg in self.telemetry.problems()]


@dataclass(frozen=True)
class ComponentSpec:
    """A configured component: its id, factory and validated config."""

    id: ComponentId
    factory: Factory
    config: ComponentConfig


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline."""

    id: str
    signal: Signal
    receivers: tuple[str, ...]
    processors: tuple[str, ...]
    exporters: tuple[str, ...]


@dataclass(frozen=True)
class CollectorConfig:
    """The whole validated configuration."""

    source: str
    components: Mapping[Kind, Mapping[str, ComponentSpec]]
    pipelines: tuple[PipelineSpec, ...]
    service: ServiceSettings


def expand_env(value: Any, path: str, problems: list[str], environ: Mapping[str, str]) -> Any:
    """Expand ``${env:...}`` in every string of a parsed YAML tree; collect unset variables as problems."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set and has no default")
            return ""

        return _ENV.sub(substitute, value)
    if isinstance(value, dict):
        return {
            key: expand_env(item, _join(path, str(key)), problems, environ) for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            expand_env(item, _join(path, str(index)), problems, environ) for index, item in enumerate(value)
        ]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}::{key}" if path else key


def load_config(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    registry: Mapping[Kind, Mapping[str, Factory]] | None = None,
) -> CollectorConfig:
    """Read, expand and validate a config file; raise :class:`ConfigError` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{source}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{source}: cannot read: {exc}"]) from None
    return parse_config(text, source, environ, registry)


def parse_config(
    text: str,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    registry: Mapping[Kind, Mapping[str, Factory]] | None = None,
) -> CollectorConfig:
    """Validate YAML text; ``source`` prefixes every message. ``registry`` defaults to the built-ins."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{source}{where}: invalid YAML: {problem}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: expected a mapping at the top level, got {_type_name(raw)}"])
    problems: list[str] = []
    raw = expand_env(raw, "", problems, os.environ if environ is None else environ)
    for key in raw:
        if key not in _TOP_LEVEL:
            problems.append(f"{key}: unknown key (expected one of: {', '.join(_TOP_LEVEL)})")

    if registry is None:
        registry = factories()
    components: dict[Kind, dict[str, ComponentSpec]] = {}
    # Ids that are declared but invalid: already reported, so pipelines naming them add no second error.
    declared_invalid: set[str] = set()
    for kind in Kind:
        section = raw.get(kind.value)
        components[kind] = _load_section(kind, section, registry[kind], problems)
        if isinstance(section, dict):
            declared_invalid.update(
                f"{kind.value}::{key}" for key in section if str(key) not in components[kind]
            )

    service: ServiceSettings | None = None
    raw_service = raw.get("service")
    if raw_service is None:
        problems.append("service: missing (expected a mapping with at least `pipelines`)")
    else:
        service = _validate_model(ServiceSettings, raw_service, "service", problems)

    pipelines: list[PipelineSpec] = []
    if service is not None:
        for name in service.extensions:
            if name not in components[Kind.EXTENSION]:
                problems.append(f"service::extensions: {name!r} is not defined under `extensions`")
        for pipeline_id, settings in service.pipelines.items():
            spec = _check_pipeline(pipeline_id, settings, components, declared_invalid, problems)
            if spec is not None:
                pipelines.append(spec)

    if problems:
        raise ConfigError([f"{source}: {problem}" for problem in problems])
    assert service is not None
    return CollectorConfig(source=source, components=components, pipelines=tuple(pipelines), service=service)


def _load_section(
    kind: Kind, raw: Any, known: Mapping[str, Factory], problems: list[str]
) -> dict[str, ComponentSpec]:
    section = kind.value
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{section}: expected a mapping of component ids, got {_type_name(raw)}")
        return {}
    specs: dict[str, ComponentSpec] = {}
    for key, body in raw.items():
        path = f"{section}::{key}"
        try:
            component_id = ComponentId.parse(str(key))
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
            continue
        factory = known.get(component_id.type)
        if factory is None:
            singular = section.removesuffix("s")
            problems.append(
                f"{path}: unknown {singular} type {component_id.type!r} (known: {', '.join(sorted(known)) or 'none'})"
            )
            continue
        config = _validate_model(factory.config_type, {} if body is None else body, path, problems)
        if config is not None:
            specs[str(component_id)] = ComponentSpec(component_id, factory, config)
    return specs


def _validate_model(model: type[Any], raw: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a mapping, got {_type_name(raw)}")
        return None
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(_describe(path, error, model))
        return None
    extra = config.problems() if isinstance(config, ComponentConfig) else []
    for subpath, message in extra:
        problems.append(f"{_join(path, subpath)}: {message}")
    return None if extra else config


def _describe(path: str, error: Any, model: type[Any]) -> str:
    location = [str(part) for part in error["loc"] if not str(part).startswith("function-")]
    kind = error["type"]
    # Pydantic reports tagged unions and wrapped validators with synthetic location parts; drop them.
    location = [part for part in location if part not in {"str", "int", "float", "bool", "list", "dict"}]
    where = _join(path, "::".join(location)) if location else path
    given = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"{where}: unknown key (expected one of: {', '.join(_known_keys(model, location[:-1]))})"
    if kind == "missing":
        return f"{where}: required key is missing"
    expected = {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "a whole number",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
    }.get(kind)
    if expected is not None:
        return f"{where}: expected {expected}, got {_show(given)}"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        bound = {
            "greater_than": "> {gt}",
            "greater_than_equal": ">= {ge}",
            "less_than": "< {lt}",
            "less_than_equal": "<= {le}",
        }[kind].format(**ctx)
        return f"{where}: expected a value {bound}, got {_show(given)}"
    if kind == "literal_error":
        return f"{where}: expected one of {ctx.get('expected')}, got {_show(given)}"
    if kind in {"too_short", "too_long"}:
        return f"{where}: {error['msg'].lower()}"
    if kind == "value_error":
        return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"
    return f"{where}: {error['msg']}, got {_show(given)}"


def _known_keys(model: type[Any], location: list[str]) -> list[str]:
    """Field names of the (nested) model at ``location``, to list in an unknown-key message."""
    current: Any = model
    for part in location:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = annotation if isinstance(annotation, type) else None
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    return sorted(fields)


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return _type_name(value)
    return repr(value)


def _type_name(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _check_pipeline(
    pipeline_id: str,
    settings: PipelineSettings,
    components: Mapping[Kind, Mapping[str, ComponentSpec]],
    declared_invalid: set[str],
    problems: list[str],
) -> PipelineSpec | None:
    path = f"service::pipelines::{pipeline_id}"
    signal_name = pipeline_id.partition("/")[0]
    try:
        signal = Signal(signal_name)
    except ValueError:
        problems.append(f"{path}: unknown signal {signal_name!r} (expected traces, metrics or logs)")
        return None
    ok = True
    for kind, names in (
        (Kind.RECEIVER, settings.receivers),
        (Kind.PROCESSOR, settings.processors),
        (Kind.EXPORTER, settings.exporters),
    ):
        seen: set[str] = set()
        for index, name in enumerate(names):
            where = f"{path}::{kind.value}::{index}"
            if name in seen:
                problems.append(f"{where}: {name!r} is listed twice")
                ok = False
                continue
            seen.add(name)
            spec = components[kind].get(name)
            if spec is None and f"{kind.value}::{name}" in declared_invalid:
                ok = False
            elif spec is None:
                problems.append(f"{where}: {name!r} is not defined under `{kind.value}`")
                ok = False
            elif signal not in spec.factory.signals:
                supported = ", ".join(sorted(s.value for s in spec.factory.signals))
                problems.append(
                    f"{where}: {name!r} cannot be used in a {signal} pipeline (supports: {supported})"
                )
                ok = False
    if not ok:
        return None
    return PipelineSpec(
        id=pipeline_id,
        signal=signal,
        receivers=tuple(settings.receivers),
        processors=tuple(settings.processors),
        exporters=tuple(settings.exporters),
    )
