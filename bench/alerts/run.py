"""Detection delay and false alerts per simulated day, per scenario and detector.

    .venv/bin/python -m bench.alerts.run [--quiet-days 5] [--fault-seeds 5]

Traffic comes from :mod:`collector.alerting.simulate` (about 40 requests a minute, a +-50% daily cycle,
log-normal latency, 1% errors). Each simulated minute is aggregated once into every signal the
scenarios use; the detectors then run over those series with the state machine of the ``anomaly``
processor (one-minute evaluation interval, the rule fields below). So the numbers are those of the
processor, without protobuf decoding.

- **false alerts / day**: firings over ``--quiet-days`` stationary days (different seeds), per day.
- **delay**: minutes from the fault's onset to the firing, median and worst over ``--fault-seeds``
  runs of the fault (3 hours of warm-up, onset at a random minute of the following 20 hours, so
  at any load of the daily cycle); ``missed``
  counts runs that did not fire while the fault lasted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from collector.alerting.engine import RuleRunner
from collector.alerting.rules import RuleConfig
from collector.alerting.signals import SignalAggregator, SignalValue, compute
from collector.alerting.simulate import DAY_S, Fault, generate

INTERVAL = 60.0
START = 1_700_006_400.0 - 1_700_006_400.0 % DAY_S
WARMUP_S = 3 * 3600.0

# scenario -> (signal, fault kind, factor, duration s)
SCENARIOS: dict[str, tuple[str, str, float, float]] = {
    "cost spike 3x": ("cost_per_minute", "cost", 3.0, 1800),
    "p95 latency step 2x": ("latency_p95_s", "latency", 2.0, 1800),
    "error burst 30%": ("error_rate", "errors", 0.3, 900),
    "quality drop 0.85->0.55": ("quality_score", "quality", 0.55, 1800),
    "tokens/request +15%": ("tokens_per_request", "tokens", 1.15, 7200),
}

# The detector configurations compared on each signal; min_samples as in the shipped rules.
DETECTORS: dict[str, dict[str, Any]] = {
    "threshold": {},  # filled per signal below: a static bound a human would pick
    "ewma": {"type": "ewma", "alpha": 0.05, "k": 6, "resolve_k": 2, "warmup": 30, "log": True},
    "zscore": {"type": "zscore", "window": "1d", "k": 5, "resolve_k": 2, "min_baseline": 30},
    "ratio": {"type": "ratio", "window": "1h", "above": 2.0, "resolve": 1.4, "min_baseline": 15},
    "cusum": {"type": "cusum", "k": 0.5, "h": 15, "warmup": 60, "log": True},
}
STATIC = {
    "cost_per_minute": 0.2,  # the usual peak is about 0.11 USD/min
    "latency_p95_s": 3.6,  # the usual p95 is about 2.0-2.6 s
    "error_rate": 0.15,
    "quality_score": 0.7,  # below
    "tokens_per_request": 1000.0,  # mean 900
}
DOWN = {"quality_score"}
# As in the shipped rules (config/alerts/latency.yaml).
OVERRIDES = {("latency_p95_s", "ewma"): {"clip_k": 2}, ("tokens_per_request", "cusum"): {"log": False}}
MIN_SAMPLES = {"quality_score": 8}


def rule_for(signal: str, detector: str) -> RuleConfig:
    config = dict(DETECTORS[detector])
    if detector == "threshold":
        bound = STATIC[signal]
        config = {"type": "threshold", ("below" if signal in DOWN else "above"): bound}
    elif signal in DOWN and "direction" not in config and detector in ("ewma", "zscore", "cusum"):
        config["direction"] = "down"
    config.update(OVERRIDES.get((signal, detector), {}))
    if signal in ("error_rate", "quality_score") and "log" in config:
        config["log"] = False  # rates and scores near 0 or 1 are not multiplicative
    return RuleConfig.model_validate(
        {
            "name": f"{detector}_{signal}",
            "signal": signal,
            "detector": config,
            "min_samples": MIN_SAMPLES.get(signal, 20),
            "cooldown": "10m",
        }
    )


def series(duration_s: float, faults: list[Fault], seed: int, signals: list[str]) -> dict[str, list[Any]]:
    """Per-minute (end time, SignalValue or None) for each signal."""
    agg = SignalAggregator(INTERVAL, 1)
    out: dict[str, list[Any]] = {s: [] for s in signals}

    def close(t: float) -> None:
        for end in agg.due(t):
            bucket = agg.window(("g",), end, INTERVAL)
            for s in signals:
                out[s].append((end, compute(s, bucket, INTERVAL) if bucket is not None else None))

    for t, obs in generate(START, duration_s, faults=faults, seed=seed):
        close(t)
        agg.observe(t, ("g",), obs)
    close(START + duration_s + INTERVAL)
    return out


def firings(rule: RuleConfig, points: list[tuple[float, SignalValue | None]]) -> list[float]:
    runner = RuleRunner(rule)
    fired = []
    for t, sample in points:
        transition = runner.step(("g",), {}, t, sample)
        if transition is not None and transition.state.value == "firing":
            fired.append(t)
    return fired


@dataclass
class Row:
    scenario: str
    detector: str
    false_per_day: float
    delays: list[float]
    missed: int


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet-days", type=int, default=5)
    parser.add_argument("--fault-seeds", type=int, default=5)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    signals = sorted({signal for signal, *_ in SCENARIOS.values()})

    quiet = [series(DAY_S, [], 1000 + seed, signals) for seed in range(args.quiet_days)]
    false_alerts: dict[tuple[str, str], int] = {}
    for signal in signals:
        for detector in DETECTORS:
            rule = rule_for(signal, detector)
            false_alerts[(signal, detector)] = sum(len(firings(rule, day[signal])) for day in quiet)

    rng = np.random.default_rng(7)
    rows: list[Row] = []
    for scenario, (signal, kind, factor, duration) in SCENARIOS.items():
        runs = []
        for seed in range(args.fault_seeds):
            onset = WARMUP_S + 60.0 * int(rng.integers(0, 20 * 60))
            fault = Fault(kind, onset, duration, factor)  # type: ignore[arg-type]
            runs.append((onset, duration, series(onset + duration + 1800, [fault], seed, [signal])[signal]))
        for detector in DETECTORS:
            rule = rule_for(signal, detector)
            delays, missed = [], 0
            for onset, length, points in runs:
                hits = [
                    t - START - onset for t in firings(rule, points) if onset < t - START <= onset + length
                ]
                if hits:
                    delays.append(hits[0] / 60.0)
                else:
                    missed += 1
            rows.append(
                Row(scenario, detector, false_alerts[(signal, detector)] / args.quiet_days, delays, missed)
            )

    header = (
        f"{'scenario':<26}{'detector':<11}{'delay median':>13}{'delay max':>11}{'missed':>8}{'false/day':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        median = f"{statistics.median(row.delays):.0f} min" if row.delays else "-"
        worst = f"{max(row.delays):.0f} min" if row.delays else "-"
        missed = f"{row.missed}/{args.fault_seeds}"
        print(
            f"{row.scenario:<26}{row.detector:<11}{median:>13}{worst:>11}{missed:>8}{row.false_per_day:>11.2f}"
        )
    print(
        f"\n{args.quiet_days} quiet days, {args.fault_seeds} runs per fault, evaluation interval 1m; "
        f"{time.perf_counter() - began:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
