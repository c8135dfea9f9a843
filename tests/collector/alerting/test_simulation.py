"""Simulated traffic through the shipped rules: a quiet day stays quiet; each fault fires fast and resolves.

Time is data time, so a day replays in about a second. The onset of every fault is on an interval
boundary; "within two evaluation intervals" means the alert fires at the end of the first or second
interval that contains faulty traffic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.alerting.engine import Evaluator, Transition
from collector.alerting.rules import load_rules
from collector.alerting.simulate import DAY_S, Fault, generate

RULES = Path(__file__).resolve().parents[3] / "config" / "alerts"
INTERVAL = 60.0
START = 1_700_006_400.0 - 1_700_006_400.0 % DAY_S  # midnight UTC


def simulate(duration_s: float, faults: list[Fault], seed: int) -> list[Transition]:
    rules, problems = load_rules(RULES)
    assert problems == []
    evaluator = Evaluator(INTERVAL, ["service.name", "gen_ai.request.model"], rules.rules)
    out: list[Transition] = []
    for t, obs in generate(START, duration_s, faults=faults, seed=seed):
        out.extend(evaluator.observe(t, ("chat-api", "gpt-4o"), obs))
    out.extend(evaluator.advance(START + duration_s + INTERVAL))
    return out


def test_a_stationary_day_with_noise_and_a_daily_cycle_raises_no_alert() -> None:
    transitions = simulate(DAY_S, [], seed=11)
    assert [(t.rule, t.state.value, (t.at - START) / 60) for t in transitions] == []


WARMUP = 3 * 3600.0  # the longest warm-up of the shipped rules is under an hour; three to be safe
FAULTS = {
    "cost-spike-3x": (Fault("cost", WARMUP, 1800, 3.0), "LLMCostSpike"),
    "p95-latency-step-2x": (Fault("latency", WARMUP, 1800, 2.0), "LLMLatencyP95Step"),
    "error-burst-30pct": (Fault("errors", WARMUP, 900, 0.3), "LLMErrorBurst"),
    "quality-drop-to-0.55": (Fault("quality", WARMUP, 1800, 0.55), "LLMQualityDrop"),
}


@pytest.mark.parametrize(("fault", "rule"), list(FAULTS.values()), ids=list(FAULTS))
def test_fault_fires_within_two_intervals_and_resolves_after_recovery(fault: Fault, rule: str) -> None:
    end = fault.start_s + fault.duration_s
    transitions = simulate(end + 3600.0, [fault], seed=5)
    mine = [(t.state.value, t.at - START) for t in transitions if t.rule == rule]
    others = [(t.rule, t.state.value) for t in transitions if t.rule != rule]
    assert others == []
    assert [state for state, _ in mine] == ["firing", "inactive"], mine
    fired, resolved = mine[0][1], mine[1][1]
    assert fault.start_s < fired <= fault.start_s + 2 * INTERVAL
    assert end < resolved <= end + 10 * INTERVAL
