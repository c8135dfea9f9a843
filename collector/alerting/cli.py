"""``otel-llm alerts``: replay a recorded series through rules, validate a rules directory, export rules.

``collector/cli.py`` hands everything after ``alerts`` to :func:`alerts_main` and everything after
``health`` to :func:`collector.alerting.health.health_main`.

``alerts test --rule FILE --series CSV`` reads a CSV with a header: ``timestamp`` (Unix seconds or ISO
8601) and ``value`` are required, ``count`` (samples behind the value) is optional and defaults to
the rule's ``min_samples``; any other column is a group label. Rows are replayed in time order through
each rule of FILE (or the one named by ``--name``), and every transition is printed.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from collector.alerting.engine import RuleRunner
from collector.alerting.notifiers import rfc3339
from collector.alerting.rules import RuleConfig, load_rules, parse_rules, validate_rules
from collector.alerting.signals import SignalValue

__all__ = ["alerts_main", "read_series", "replay"]

_USAGE = """usage: otel-llm alerts test --rule FILE --series CSV [--name RULE]
       otel-llm alerts validate DIR
       otel-llm alerts export DIR --out FILE [--group-by a,b] [--interval 1m]

test      replay a recorded series (CSV: timestamp,value[,count][,label...]) through the rules of
          FILE and print when each would fire and resolve
validate  check every rule file in DIR; exit 2 with one line per problem
export    write the rules of DIR that PromQL can express as Prometheus alerting rules"""

EXIT_USAGE = 2


class _UsageError(Exception):
    pass


def _timestamp(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"expected Unix seconds or an ISO 8601 time, got {text!r}") from None


def read_series(path: str | Path) -> list[tuple[float, float, int | None, dict[str, str]]]:
    """Rows ``(t, value, count or None, group labels)`` sorted by time; ``ValueError`` names the line."""
    rows: list[tuple[float, float, int | None, dict[str, str]]] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        missing = [name for name in ("timestamp", "value") if name not in fields]
        if missing:
            raise ValueError(
                f"{path}: header: missing column(s) {', '.join(missing)} (have: {', '.join(fields)})"
            )
        labels = [name for name in fields if name not in ("timestamp", "value", "count")]
        for line, row in enumerate(reader, start=2):
            try:
                t = _timestamp(row["timestamp"] or "")
                value = float(row["value"] or "nan")
                count = int(row["count"]) if row.get("count") else None
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
            rows.append((t, value, count, {name: row.get(name) or "" for name in labels}))
    rows.sort(key=lambda item: item[0])
    return rows


def replay(
    rule: RuleConfig, rows: Sequence[tuple[float, float, int | None, dict[str, str]]], out: TextIO
) -> int:
    """Run ``rows`` through ``rule``, print each transition; returns how many times it fired."""
    runner = RuleRunner(rule)
    fired = 0
    for t, value, count, labels in rows:
        key = tuple(labels[name] for name in sorted(labels))
        n = count if count is not None else rule.min_samples
        transition = runner.step(key, labels, t, SignalValue(value, n))
        if transition is None:
            continue
        fired += transition.state.value == "firing"
        group = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        print(
            f"{rfc3339(t)}  {rule.name}  {transition.previous.value} -> {transition.state.value}  "
            f"severity={transition.severity} value={transition.value:.4g} score={transition.score:.3g} "
            f"baseline={transition.baseline:.4g}" + (f"  {{{group}}}" if group else ""),
            file=out,
        )
    return fired


def _test(args: list[str], out: TextIO) -> int:
    options = _options(args, {"--rule", "--series", "--name"})
    if "--rule" not in options or "--series" not in options:
        raise _UsageError("alerts test needs --rule FILE and --series CSV")
    problems: list[str] = []
    path = options["--rule"]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc}") from None
    rules = parse_rules(text, path, problems)
    if problems:
        raise _UsageError("\n".join(problems))
    if "--name" in options:
        rules = [rule for rule in rules if rule.name == options["--name"]]
        if not rules:
            raise _UsageError(f"{path}: no rule named {options['--name']!r}")
    if not rules:
        raise _UsageError(f"{path}: no rules")
    try:
        rows = read_series(options["--series"])
    except OSError as exc:
        raise _UsageError(f"cannot read {options['--series']}: {exc}") from None
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    for rule in rules:
        fired = replay(rule, rows, out)
        print(f"{rule.name}: {len(rows)} samples, fired {fired} time(s)", file=out)
    return 0


def _validate(args: list[str], out: TextIO, err: TextIO) -> int:
    if len(args) != 1:
        raise _UsageError("alerts validate needs one DIR")
    problems = validate_rules(args[0])
    for problem in problems:
        print(problem, file=err)
    if problems:
        return EXIT_USAGE
    print(f"{args[0]}: valid ({len(load_rules(args[0])[0].rules)} rules)", file=out)
    return 0


def _export(args: list[str], out: TextIO) -> int:
    from collector.alerting.promrules import write_prometheus_rules
    from collector.durations import parse_duration

    if not args or args[0].startswith("--"):
        raise _UsageError("alerts export needs DIR")
    directory = args[0]
    options = _options(args[1:], {"--out", "--group-by", "--interval"})
    if "--out" not in options:
        raise _UsageError("alerts export needs --out FILE")
    rules, problems = load_rules(directory)
    if problems:
        raise _UsageError("\n".join(problems))
    group_by = [g for g in options.get("--group-by", "service.name,gen_ai.request.model").split(",") if g]
    try:
        interval = parse_duration(options.get("--interval", "1m"))
    except ValueError as exc:
        raise _UsageError(f"--interval: {exc}") from None
    skipped = write_prometheus_rules(options["--out"], rules.rules, group_by, interval)
    print(f"{options['--out']}: {len(rules.rules) - len(skipped)} rules written", file=out)
    for line in skipped:
        print(f"skipped {line}", file=out)
    return 0


def _options(args: list[str], known: set[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        if flag not in known:
            raise _UsageError(f"unexpected argument {flag!r}")
        if not rest:
            raise _UsageError(f"{flag} needs a value")
        options[flag] = rest.pop(0)
    return options


def alerts_main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of ``otel-llm alerts``; 0 on success, 2 on a usage or rule error (one line each)."""
    stdout = out or sys.stdout
    stderr = err or sys.stderr
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, file=stdout if args else stderr)
        return 0 if args else EXIT_USAGE
    command, rest = args[0], args[1:]
    try:
        if command == "test":
            return _test(rest, stdout)
        if command == "validate":
            return _validate(rest, stdout, stderr)
        if command == "export":
            return _export(rest, stdout)
        raise _UsageError(f"unknown command {command!r} (expected test, validate or export)")
    except _UsageError as exc:
        for line in str(exc).splitlines():
            print(f"otel-llm alerts: error: {line}", file=stderr)
        return EXIT_USAGE
