"""Rule files: the shipped set is valid; every mistake is reported with its file and key path."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from collector.alerting.rules import RuleWatcher, load_rules, validate_rules

REPO = Path(__file__).resolve().parents[3]
DEFAULT_RULES = REPO / "config" / "alerts"


def test_shipped_rules_are_valid_and_cover_the_issue() -> None:
    rules, problems = load_rules(DEFAULT_RULES)
    assert problems == []
    by_signal = {rule.signal for rule in rules.rules}
    assert {"cost_per_minute", "latency_p95_s", "error_rate", "quality_score", "drift_state"} <= by_signal
    assert {rule.detector.type for rule in rules.rules} == {"threshold", "ewma", "zscore", "ratio", "cusum"}


CASES = {
    "bad-name": (
        "- {name: 'a b', signal: error_rate, detector: {type: threshold, above: 1}}",
        "rules::0::name: expected letters, digits and _ (not first), got 'a b'",
    ),
    "unknown-signal": (
        "- {name: A, signal: p95, detector: {type: threshold, above: 1}}",
        "rules::0::signal: unknown signal 'p95' (see docs/alerting.md for the list)",
    ),
    "unknown-detector": (
        "- {name: A, signal: error_rate, detector: {type: prophet}}",
        "rules::0::detector::type: unknown detector 'prophet' "
        "(expected one of: threshold, ewma, zscore, ratio, cusum)",
    ),
    "missing-type": (
        "- {name: A, signal: error_rate, detector: {above: 1}}",
        "rules::0::detector::type: required key is missing (one of: threshold, ewma, zscore, ratio, cusum)",
    ),
    "detector-unknown-key": (
        "- {name: A, signal: error_rate, detector: {type: ewma, sigma: 3}}",
        "rules::0::detector::sigma: unknown key (expected one of: alpha, clip_k, critical_k, "
        "direction, k, log, min_sigma_ratio, resolve_k, type, warmup)",
    ),
    "rule-unknown-key": (
        "- {name: A, signal: error_rate, fire_for: 5m, detector: {type: ewma}}",
        "rules::0::fire_for: unknown key (expected one of: annotations, cooldown, detector, "
        "enabled, for, group_by, keep_firing_for, labels, min_samples, name, promql, "
        "severity, signal, window)",
    ),
    "bad-duration": (
        "- {name: A, signal: error_rate, for: soon, detector: {type: ewma}}",
        "rules::0::for: expected a duration such as 5s, 250ms or 1m30s, got 'soon'",
    ),
    "bad-severity": (
        "- {name: A, signal: error_rate, severity: page, detector: {type: ewma}}",
        "rules::0::severity: expected one of 'info', 'warning' or 'critical', got 'page'",
    ),
    "bad-bound": (
        "- {name: A, signal: error_rate, detector: {type: ratio, above: 0.5}}",
        "rules::0::detector::above: expected a value > 1.0, got 0.5",
    ),
    "hysteresis-inverted": (
        "- {name: A, signal: error_rate, detector: {type: threshold, above: 1, resolve: 2}}",
        "rules::0::detector::resolve: expected a value <= above (1), got 2",
    ),
    "reserved-label": (
        "- {name: A, signal: error_rate, labels: {severity: x}, detector: {type: ewma}}",
        "rules::0::labels: expected Prometheus label names other than alertname and "
        "severity, got ['severity']",
    ),
    "not-a-list": ("{name: A}", "rules: expected a list, got dict"),
}


@pytest.mark.parametrize(("body", "message"), list(CASES.values()), ids=list(CASES))
def test_rule_problem_messages(tmp_path: Path, body: str, message: str) -> None:
    text = f"rules:\n  {body}\n" if body.startswith("-") else f"rules: {body}\n"
    (tmp_path / "r.yaml").write_text(text)
    assert validate_rules(tmp_path) == [f"{tmp_path / 'r.yaml'}: {message}"]


def test_every_problem_of_every_file_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n"
        "  - {name: A, signal: nope, detector: {type: ewma}}\n"
        "  - {name: B, signal: error_rate, detector: {type: ewma, k: -1}}\n"
    )
    (tmp_path / "b.yml").write_text("rules:\n  - {name: A, signal: error_rate, detector: {type: ewma}}\n")
    (tmp_path / "c.yaml").write_text("rules: [\n")
    (tmp_path / "notes.txt").write_text("not a rule file")
    problems = validate_rules(tmp_path)
    assert problems == [
        f"{tmp_path / 'a.yaml'}: rules::0::signal: unknown signal 'nope' (see docs/alerting.md for the list)",
        f"{tmp_path / 'a.yaml'}: rules::1::detector::k: expected a value > 0.0, got -1",
        f"{tmp_path / 'c.yaml'}:2:1: invalid YAML: expected the node content, but found '<stream end>'",
    ]
    # A is defined once valid (b.yml) and once invalid (a.yaml): no duplicate is reported.
    assert not any("also defined" in p for p in problems)


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("rules:\n  - {name: A, signal: error_rate, detector: {type: ewma}}\n")
    assert validate_rules(tmp_path) == [
        f"{tmp_path / 'b.yaml'}: rules::0::name: 'A' is also defined in {tmp_path / 'a.yaml'}"
    ]


def test_environment_variables_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM", "search")
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - {name: A, signal: error_rate, labels: {team: '${env:TEAM}'}, detector: {type: ewma}}\n"
    )
    rules, problems = load_rules(tmp_path)
    assert problems == [] and rules.rules[0].labels == {"team": "search"}


def test_missing_directory() -> None:
    assert validate_rules("/nonexistent/alerts") == ["/nonexistent/alerts: not a directory"]


def test_watcher_reports_added_changed_and_removed_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules: []\n")
    watcher = RuleWatcher(tmp_path)
    assert watcher.changed() is None
    (tmp_path / "b.yaml").write_text("rules: []\n")
    assert watcher.changed() == ["b.yaml"]
    stamp = time.time() + 5
    os.utime(tmp_path / "a.yaml", (stamp, stamp))
    assert watcher.changed() == ["a.yaml"]
    (tmp_path / "b.yaml").unlink()
    assert watcher.changed() == ["b.yaml"]
    assert watcher.changed() is None
