"""``otel-llm alerts test|validate|export`` and ``otel-llm health``."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from collector.alerting.cli import alerts_main
from collector.alerting.health import HealthSettings, component_scores, health_main, health_score
from tests.collector.alerting._http import recording_server

RULES = Path(__file__).resolve().parents[3] / "config" / "alerts"


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = alerts_main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


def test_replay_prints_when_the_rule_fires_and_resolves(tmp_path: Path) -> None:
    rule = tmp_path / "r.yaml"
    rule.write_text(
        "rules:\n  - name: Slow\n    signal: latency_p95_s\n    for: 2m\n    min_samples: 5\n"
        "    detector: {type: threshold, above: 5, resolve: 4}\n"
    )
    series = tmp_path / "s.csv"
    values = [3, 6, 6, 6, 4.5, 3, 3]
    series.write_text(
        "timestamp,value,count,service\n"
        + "".join(f"2026-01-01T00:{i:02d}:00Z,{v},20,chat\n" for i, v in enumerate(values))
        + "2026-01-01T00:09:00Z,9,1,chat\n"  # too few samples: no data
    )
    code, out, err = run(["test", "--rule", str(rule), "--series", str(series)])
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("2026-01-01T00:01:00.000Z  Slow  inactive -> pending")
    assert lines[1].startswith("2026-01-01T00:03:00.000Z  Slow  pending -> firing  severity=warning value=6")
    assert lines[1].endswith("{service=chat}")
    assert lines[2].startswith("2026-01-01T00:05:00.000Z  Slow  firing -> inactive")
    assert lines[3] == "Slow: 8 samples, fired 1 time(s)"


def test_replay_usage_errors(tmp_path: Path) -> None:
    series = tmp_path / "s.csv"
    series.write_text("time,value\n1,2\n")
    assert run(["test", "--rule", str(RULES / "cost.yaml")])[0] == 2
    code, _, err = run(["test", "--rule", str(RULES / "cost.yaml"), "--series", str(series)])
    assert code == 2 and "header: missing column(s) timestamp" in err
    series.write_text("timestamp,value\nyesterday,2\n")
    code, _, err = run(["test", "--rule", str(RULES / "cost.yaml"), "--series", str(series)])
    assert code == 2 and f"{series}:2: expected Unix seconds or an ISO 8601 time" in err
    code, _, err = run(["test", "--rule", str(RULES / "cost.yaml"), "--series", str(series), "--name", "X"])
    assert code == 2 and "no rule named 'X'" in err
    assert run(["frobnicate"])[0] == 2
    assert run([])[0] == 2
    assert run(["--help"])[0] == 0


def test_validate(tmp_path: Path) -> None:
    code, out, _ = run(["validate", str(RULES)])
    assert code == 0 and out.startswith(f"{RULES}: valid (")
    (tmp_path / "x.yaml").write_text("rules:\n  - {name: X, signal: nope, detector: {type: ewma}}\n")
    code, _, err = run(["validate", str(tmp_path)])
    assert code == 2 and "rules::0::signal: unknown signal 'nope'" in err


def test_export_writes_prometheus_rules(tmp_path: Path) -> None:
    target = tmp_path / "rules.yaml"
    code, out, _ = run(["export", str(RULES), "--out", str(target), "--group-by", "service.name"])
    assert code == 0 and "skipped LLMLatencyP95Step: the ewma detector has no PromQL form" in out
    document = yaml.safe_load(target.read_text())
    rules = {rule["alert"]: rule for rule in document["groups"][0]["rules"]}
    burst = rules["LLMErrorBurst"]
    assert burst["expr"] == (
        "(sum by (service_name) (rate(otel_llm_errors_total[1m])) / "
        "sum by (service_name) (rate(otel_llm_requests_total[1m]))) > 0.15"
    )
    assert burst["labels"] == {"severity": "warning"}
    assert "{{ $labels.service_name }}" in burst["annotations"]["summary"]
    assert rules["LLMLatencyP95High"]["for"] == "5m"
    assert "avg_over_time" in rules["LLMCostSpike"]["expr"] and "[1h:1m]" in rules["LLMCostSpike"]["expr"]


def test_health_score_components() -> None:
    settings = HealthSettings()
    perfect = component_scores(settings, error_rate=0.0, latency_p95_s=1.0, quality=0.9, drift=0.0)
    assert health_score(settings, perfect) == 100.0
    down = component_scores(settings, error_rate=0.5, latency_p95_s=30.0, quality=0.2, drift=1.0)
    assert health_score(settings, down) == 0.0
    # Missing components are left out and the weights renormalised: errors 0.4 at 1.0, latency 0.3 at 0.5.
    partial = component_scores(settings, error_rate=0.0, latency_p95_s=10.0)
    assert health_score(settings, partial) == 100 * (0.4 * 1.0 + 0.3 * 0.5) / 0.7
    assert health_score(settings, {}) is None


EXPOSITION = b"""# HELP otel_llm_health_score_percent Overall health
# TYPE otel_llm_health_score_percent gauge
otel_llm_health_score_percent{service_name="chat",gen_ai_request_model="gpt-4o"} 97.5
otel_llm_health_score_percent{service_name="search",gen_ai_request_model="claude"} 41
# HELP otel_llm_alert_state_ratio Alerts
# TYPE otel_llm_alert_state_ratio gauge
otel_llm_alert_state_ratio{otel_llm_alert_rule="LLMErrorBurst",otel_llm_alert_severity="warning",otel_llm_alert_state="firing",service_name="search",gen_ai_request_model="claude"} 1
"""


def test_health_table_from_the_prometheus_endpoint() -> None:
    with recording_server() as server:
        server.body = EXPOSITION
        out, err = io.StringIO(), io.StringIO()
        code = health_main(["--endpoint", server.url + "/metrics"], out, err)
    assert (code, err.getvalue()) == (0, "")
    assert out.getvalue().splitlines() == [
        "SERVICE  MODEL   SCORE",
        "search   claude  41",
        "chat     gpt-4o  98",
        "",
        "RULE           STATE   SEVERITY  SERVICE  MODEL",
        "LLMErrorBurst  firing  warning   search   claude",
    ]


def test_health_errors() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert health_main(["--endpoint", "127.0.0.1:9"], out, err) == 1
    assert "cannot read http://127.0.0.1:9/metrics" in err.getvalue()
    assert health_main(["--bogus"], out, err) == 2
    with recording_server() as server:
        server.body = b"# nothing\n"
        assert health_main(["--endpoint", server.url + "/metrics"], out, err) == 1
