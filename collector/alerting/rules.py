"""Alert rules as code: YAML files in a directory (``config/alerts/*.yaml``), validated with key paths.

A file holds a list of rules::

    rules:
      - name: CostSpike
        signal: cost_per_minute
        detector: {type: ratio, window: 1h, above: 2.5}
        severity: warning

Every mistake in every file is reported at once, in the config loader's style:
``config/alerts/cost.yaml: rules::0::detector::above: expected a value > 1, got 0.5``.
:func:`validate_rules` is what ``otel-llm validate-config`` calls; :class:`RuleWatcher` reloads a
directory when a file's mtime, size or the set of files changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from collector.alerting.detectors import (
    CusumConfig,
    DetectorConfig,
    EwmaConfig,
    RatioConfig,
    ThresholdConfig,
    ZScoreConfig,
)
from collector.alerting.signals import is_signal
from collector.component import ComponentConfig
from collector.configuration import _describe, expand_env
from collector.durations import Duration

__all__ = [
    "RuleConfig",
    "RuleSet",
    "RuleWatcher",
    "load_rules",
    "parse_rules",
    "validate_rules",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_LABELS = frozenset({"alertname", "severity"})


class RuleConfig(ComponentConfig):
    """One alert rule: a signal per group, a detector, and when to fire and resolve."""

    name: str = Field(description="Unique across the directory; the `alertname` label. Letters, digits, `_`.")
    signal: str = Field(description="A signal name (see `docs/alerting.md`), e.g. `latency_p95_s`.")
    detector: DetectorConfig = Field(description="How a sample is judged; `type` selects the detector.")
    severity: Literal["info", "warning", "critical"] = Field(
        "warning", description="Severity when the detector does not report a critical sample."
    )
    window: Duration | None = Field(
        None,
        gt=0,
        description="Signal window, a multiple of the evaluation interval; default one interval.",
    )
    for_: Duration = Field(
        0.0, alias="for", description="How long the fire condition must hold before firing (`5m`)."
    )
    keep_firing_for: Duration = Field(
        0.0, description="How long the resolve condition must hold before resolving; damps flapping."
    )
    cooldown: Duration = Field(
        600.0, description="After a resolution, no new firing of the same rule and group for this long."
    )
    min_samples: int = Field(
        10, ge=0, description="Windows with fewer samples (spans, scores) are no data for the rule."
    )
    group_by: list[str] | None = Field(
        None, description="Dimensions for this rule; default the processor's `group_by`."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the alert.")
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="`summary`, `description`, `runbook_url`...; `{value}`, `{baseline}`, `{score}` and "
        "group labels such as `{service_name}` are filled in.",
    )
    promql: str | None = Field(
        None, description="PromQL for the signal when exporting Prometheus rules; default a built-in one."
    )
    enabled: bool = Field(True, description="`false` keeps the rule in the file but never evaluates it.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"expected letters, digits and _ (not first), got {value!r}")
        return value

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        if not is_signal(value):
            raise ValueError(f"unknown signal {value!r} (see docs/alerting.md for the list)")
        return value

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [key for key in value if not _LABEL.match(key) or key in _RESERVED_LABELS]
        if bad:
            raise ValueError(f"expected Prometheus label names other than alertname and severity, got {bad}")
        return value

    def problems(self) -> list[tuple[str, str]]:
        return [(f"detector::{path}" if path else "detector", msg) for path, msg in self.detector.problems()]


@dataclass(frozen=True)
class RuleSet:
    """Rules of a directory with the file each came from."""

    rules: tuple[RuleConfig, ...]
    sources: dict[str, str]

    def by_name(self) -> dict[str, RuleConfig]:
        return {rule.name: rule for rule in self.rules}


_DETECTORS: dict[str, type[ComponentConfig]] = {
    "threshold": ThresholdConfig,
    "ewma": EwmaConfig,
    "zscore": ZScoreConfig,
    "ratio": RatioConfig,
    "cusum": CusumConfig,
}


def _keys(model: type[ComponentConfig]) -> list[str]:
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _rule_problem(path: str, error: Any, raw: dict[str, Any]) -> str:
    """One pydantic error of a rule as ``path::key: message``, without pydantic's union tags."""
    location = [str(part) for part in error["loc"]]
    if len(location) > 1 and location[0] == "detector" and location[1] in _DETECTORS:
        del location[1]
    where = "::".join([path, *location])
    kind = error["type"]
    if kind == "union_tag_invalid":
        return f"{where}::type: unknown detector {error['ctx']['tag']!r} (expected one of: {', '.join(_DETECTORS)})"
    if kind == "union_tag_not_found":
        return f"{where}::type: required key is missing (one of: {', '.join(_DETECTORS)})"
    if kind == "extra_forbidden":
        model: type[ComponentConfig] = RuleConfig
        if location[0] == "detector" and isinstance(raw.get("detector"), dict):
            model = _DETECTORS.get(str(raw["detector"].get("type")), RuleConfig)
        return f"{where}: unknown key (expected one of: {', '.join(_keys(model))})"
    return _describe(path, {**error, "loc": tuple(location)}, RuleConfig)


def parse_rules(text: str, source: str, problems: list[str]) -> list[RuleConfig]:
    """Rules of one file's text; problems are appended as ``source: rules::0::key: message``.

    Each rule is validated on its own, so one broken rule does not hide the problems of the others.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problems.append(f"{source}{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}")
        return []
    if raw is None:
        return []
    local: list[str] = []
    raw = expand_env(raw, "", local, os.environ)
    problems.extend(f"{source}: {problem}" for problem in local)
    if not isinstance(raw, dict):
        problems.append(f"{source}: expected a mapping with `rules`, got {type(raw).__name__}")
        return []
    for key in raw:
        if key != "rules":
            problems.append(f"{source}: {key}: unknown key (expected one of: rules)")
    items = raw.get("rules") or []
    if not isinstance(items, list):
        problems.append(f"{source}: rules: expected a list, got {type(items).__name__}")
        return []
    rules: list[RuleConfig] = []
    for index, item in enumerate(items):
        path = f"rules::{index}"
        if not isinstance(item, dict):
            problems.append(f"{source}: {path}: expected a mapping, got {type(item).__name__}")
            continue
        try:
            rule = RuleConfig.model_validate(item)
        except ValidationError as exc:
            problems.extend(f"{source}: {_rule_problem(path, error, item)}" for error in exc.errors())
            continue
        found = rule.problems()
        problems.extend(f"{source}: {path}::{sub}: {message}" for sub, message in found)
        if not found:
            rules.append(rule)
    return rules


def _rule_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())


def load_rules(directory: str | Path) -> tuple[RuleSet, list[str]]:
    """Load every ``*.yaml``/``*.yml`` of ``directory``; return the rules and every problem found.

    With problems the rule set is still returned (rules of valid files) so callers can choose; the
    processor refuses the whole reload instead.
    """
    folder = Path(directory)
    problems: list[str] = []
    if not folder.is_dir():
        return RuleSet((), {}), [f"{folder}: not a directory"]
    rules: list[RuleConfig] = []
    sources: dict[str, str] = {}
    for path in _rule_files(folder):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        for index, rule in enumerate(parse_rules(text, str(path), problems)):
            if rule.name in sources:
                problems.append(
                    f"{path}: rules::{index}::name: {rule.name!r} is also defined in {sources[rule.name]}"
                )
                continue
            sources[rule.name] = str(path)
            rules.append(rule)
    return RuleSet(tuple(rules), sources), problems


def validate_rules(directory: str | Path) -> list[str]:
    """Every problem of the rules in ``directory``, one line each; empty when valid."""
    return load_rules(directory)[1]


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = _rule_files(directory)
    except OSError:
        return ()
    out = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


def file_owners(directory: Path, names: Sequence[str]) -> dict[str, str]:
    """Owner user name (or uid) of each named file, for the audit log."""
    import pwd

    owners: dict[str, str] = {}
    for name in names:
        try:
            uid = (directory / name).stat().st_uid
        except OSError:
            continue
        try:
            owners[name] = pwd.getpwuid(uid).pw_name
        except KeyError:
            owners[name] = str(uid)
    return owners


class RuleWatcher:
    """Notices changes of a rules directory by file names, mtimes and sizes (no inotify dependency)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._seen = _fingerprint(self.directory)

    def changed(self) -> list[str] | None:
        """Names of files added, removed or modified since the last call; ``None`` when nothing changed."""
        now = _fingerprint(self.directory)
        if now == self._seen:
            return None
        before = {name: (mtime, size) for name, mtime, size in self._seen}
        after = {name: (mtime, size) for name, mtime, size in now}
        self._seen = now
        return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
