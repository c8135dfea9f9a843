"""The tests' calibration (false-alarm rate at alpha over many trials), power, and the alarm rule."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from collector.drift.embedders import HashingEmbedder
from collector.drift.statistics import (
    AlarmRule,
    AlarmTracker,
    Transition,
    chi_squared_test,
    ks_test,
    population_stability_index,
    population_stability_index_categorical,
    two_sample_test,
    wasserstein,
)
from tests.collector.drift._helpers import prompts

TRIALS = 300


def _within_sampling_error(hits: int, trials: int, alpha: float) -> bool:
    """True unless a binomial test rejects "rate <= alpha" at 0.001 (one-sided, so conservative tests pass)."""
    return float(stats.binomtest(hits, trials, alpha, alternative="greater").pvalue) > 0.001


def _brute_force_mmd(x: np.ndarray, y: np.ndarray) -> float:
    pooled = np.vstack((x, y)).astype(np.float64)
    squared = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    n, m = len(x), len(y)
    bandwidth = np.median(squared[np.triu_indices(n + m, 1)])
    kernel = np.exp(-squared / bandwidth)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean())


def test_mmd_score_matches_the_definition() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(31, 6)), rng.normal(0.3, size=(17, 6))
    result = two_sample_test(x, y, alpha=0.05, seed=0, permutations=99)
    # The median of an even number of pairs differs by one order statistic from numpy's; tolerance covers it.
    assert result.score == pytest.approx(_brute_force_mmd(x, y), rel=0.05)


def test_mmd_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    first = two_sample_test(x, y, alpha=0.05, seed=7)
    assert two_sample_test(x, y, alpha=0.05, seed=7) == first


@pytest.mark.parametrize(
    ("alpha", "size", "dims"),
    [(0.05, 40, 16), (0.1, 20, 384)],
    ids=["alpha0.05-n40-d16", "alpha0.1-n20-d384"],
)
def test_mmd_false_alarm_rate_is_alpha(alpha: float, size: int, dims: int) -> None:
    rng = np.random.default_rng(3)
    hits = sum(
        two_sample_test(
            rng.normal(size=(size, dims)), rng.normal(size=(size, dims)), alpha=alpha, seed=i, permutations=99
        ).drifted
        for i in range(TRIALS)
    )
    assert _within_sampling_error(hits, TRIALS, alpha), hits
    # Not grossly conservative either (the permutation test is exact, the rate should be near alpha).
    assert hits >= stats.binom.ppf(0.0005, TRIALS, alpha)


def test_mmd_p_values_are_uniform_without_drift() -> None:
    rng = np.random.default_rng(4)
    p_values = [
        two_sample_test(
            rng.normal(size=(25, 8)), rng.normal(size=(25, 8)), alpha=0.5, seed=i, permutations=199
        ).p_value
        for i in range(200)
    ]
    # alpha=0.5 keeps the early stop from cutting p-values above 0.5 short; check the lower half only.
    below = np.asarray([p for p in p_values if p <= 0.5]) / 0.5
    assert stats.kstest(below, "uniform").pvalue > 0.001


def test_mmd_detects_text_from_another_topic() -> None:
    rng = np.random.default_rng(5)
    embed = HashingEmbedder(dimensions=256).embed
    hits = 0
    for trial in range(20):
        reference = embed(prompts("billing", 60, rng))
        current = embed(prompts({"billing": 0.5, "cooking": 0.5}, 60, rng))
        hits += two_sample_test(reference, current, alpha=0.01, seed=trial, permutations=199).drifted
    assert hits >= 19


def test_mmd_false_alarms_on_text_stay_at_alpha() -> None:
    rng = np.random.default_rng(6)
    embed = HashingEmbedder(dimensions=256).embed
    mix = {"billing": 0.5, "programming": 0.3, "travel": 0.2}
    alpha = 0.05
    hits = sum(
        two_sample_test(
            embed(prompts(mix, 30, rng)), embed(prompts(mix, 30, rng)), alpha=alpha, seed=i, permutations=99
        ).drifted
        for i in range(TRIALS)
    )
    assert _within_sampling_error(hits, TRIALS, alpha), hits


def test_mmd_degenerate_inputs() -> None:
    same = np.ones((10, 4))
    assert two_sample_test(same, same, alpha=0.05, seed=0).p_value == 1.0
    with pytest.raises(ValueError, match="same dimension"):
        two_sample_test(np.ones((5, 3)), np.ones((5, 4)), alpha=0.05, seed=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        two_sample_test(np.ones((1, 3)), np.ones((5, 3)), alpha=0.05, seed=0)
    with pytest.raises(ValueError, match="finite"):
        two_sample_test(np.full((5, 3), np.nan), np.ones((5, 3)), alpha=0.05, seed=0)
    with pytest.raises(ValueError, match="alpha"):
        two_sample_test(np.ones((5, 3)), np.ones((5, 3)), alpha=1.5, seed=0)


def test_early_stop_gives_the_same_decision_as_all_permutations() -> None:
    rng = np.random.default_rng(8)
    for trial in range(30):
        x, y = rng.normal(size=(30, 5)), rng.normal(0.2 * (trial % 3), size=(30, 5))
        # alpha 0.99 never stops early, so it is the full-permutation run.
        full = two_sample_test(x, y, alpha=0.99, seed=trial, permutations=299)
        fast = two_sample_test(x, y, alpha=0.05, seed=trial, permutations=299)
        assert fast.drifted == (full.p_value <= 0.05)


def test_ks_false_alarms_on_integer_counts_at_most_alpha() -> None:
    rng = np.random.default_rng(9)
    alpha = 0.05
    hits = sum(
        ks_test(rng.poisson(40, 100), rng.poisson(40, 100), alpha=alpha).drifted for _ in range(TRIALS)
    )
    assert _within_sampling_error(hits, TRIALS, alpha), hits


def test_ks_detects_longer_prompts_and_wasserstein_measures_them() -> None:
    rng = np.random.default_rng(10)
    reference, current = rng.lognormal(5, 0.5, 200), rng.lognormal(5.4, 0.5, 100)
    assert ks_test(reference, current, alpha=0.01).drifted
    assert wasserstein(reference, current) > 0.5
    assert wasserstein(reference, reference) == 0.0
    assert wasserstein([3.0, 3.0], [3.0]) == 0.0
    assert math.isinf(wasserstein([3.0, 3.0], [4.0]))


def test_chi_squared_false_alarm_rate_and_power() -> None:
    rng = np.random.default_rng(11)
    labels = np.array(["stop", "length", "tool_calls", "content_filter"])
    base = [0.7, 0.15, 0.14, 0.01]
    alpha = 0.05

    def counts(p: list[float], size: int) -> dict[str, int]:
        return dict(Counter(rng.choice(labels, size=size, p=p).tolist()))

    hits = sum(
        chi_squared_test(counts(base, 300), counts(base, 100), alpha=alpha).drifted for _ in range(TRIALS)
    )
    assert _within_sampling_error(hits, TRIALS, alpha), hits
    shifted = [0.45, 0.4, 0.14, 0.01]
    assert (
        sum(chi_squared_test(counts(base, 300), counts(shifted, 100), alpha=alpha).drifted for _ in range(20))
        >= 18
    )


def test_chi_squared_with_rare_categories_stays_calibrated_and_sees_new_errors() -> None:
    rng = np.random.default_rng(14)
    labels = np.array(["none", "timeout", "rate_limit"])
    base = [0.97, 0.02, 0.01]  # expected counts below 5: the Monte Carlo p-value is used
    alpha = 0.05

    def counts(p: list[float], size: int) -> dict[str, int]:
        return dict(Counter(rng.choice(labels, size=size, p=p).tolist()))

    hits = sum(
        chi_squared_test(counts(base, 250), counts(base, 100), alpha=alpha, seed=i, resamples=199).drifted
        for i in range(TRIALS)
    )
    assert _within_sampling_error(hits, TRIALS, alpha), hits
    # Errors from 0 % to 10 %: a category absent from the reference, too rare for the asymptotic test.
    result = chi_squared_test({"none": 250}, {"none": 90, "timeout": 10}, alpha=0.01)
    assert result.drifted and result.p_value < 0.005


def test_chi_squared_edge_cases() -> None:
    assert chi_squared_test({"stop": 50}, {"stop": 10}, alpha=0.05).p_value == 1.0
    # A brand-new category with enough mass is detected.
    assert chi_squared_test({"none": 200}, {"none": 60, "timeout": 40}, alpha=0.01).drifted
    with pytest.raises(ValueError, match="each sample"):
        chi_squared_test({}, {"a": 1}, alpha=0.05)


def test_psi() -> None:
    rng = np.random.default_rng(12)
    reference = rng.normal(size=1000)
    assert population_stability_index(reference, rng.normal(size=1000)) < 0.05
    assert population_stability_index(reference, rng.normal(1.0, size=1000)) > 0.25
    assert population_stability_index_categorical({"a": 50, "b": 50}, {"a": 50, "b": 50}) == 0.0
    assert population_stability_index_categorical({"a": 90, "b": 10}, {"a": 10, "b": 90}) > 1.0


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (AlarmRule(alpha=0.01, consecutive=1), 0.01),
        (AlarmRule(alpha=0.01, consecutive=2), 0.1),
        (AlarmRule(alpha=0.01, consecutive=2, disjoint_windows=False), 0.01),
        (AlarmRule(alpha=0.04, consecutive=2, signals=4), 0.1),
    ],
    ids=["k1", "k2-tumbling", "k2-sliding", "k2-bonferroni-4-signals"],
)
def test_alarm_rule_levels(rule: AlarmRule, expected: float) -> None:
    assert rule.test_alpha == pytest.approx(expected)
    assert (rule.permutations_for() + 1) * rule.test_alpha >= 20


def test_alarm_tracker_needs_k_in_a_row_to_start_and_to_end() -> None:
    tracker = AlarmTracker(AlarmRule(alpha=0.01, consecutive=2))
    steps = [True, False, True, True, True, False, True, False, False]
    seen = [tracker.update(alarm) for alarm in steps]
    assert seen == [
        Transition.NONE,
        Transition.NONE,
        Transition.NONE,
        Transition.STARTED,
        Transition.NONE,
        Transition.NONE,
        Transition.NONE,
        Transition.NONE,
        Transition.ENDED,
    ]


def test_alarm_rule_folds_rotate_over_disjoint_reference_parts() -> None:
    rule = AlarmRule(alpha=0.01, consecutive=3)
    assert [rule.fold(i) for i in range(4)] == [(0, 3), (1, 3), (2, 3), (0, 3)]
    assert AlarmRule(consecutive=3, disjoint_windows=False).fold(1) == (0, 1)
    assert AlarmRule(consecutive=1).fold(1) == (0, 1)


def test_event_rate_per_decision_is_at_most_alpha_with_two_in_a_row() -> None:
    """The rule end to end: tumbling windows against rotating reference folds, events per decision."""
    rng = np.random.default_rng(13)
    alpha = 0.05
    rule = AlarmRule(alpha=alpha, consecutive=2)
    decisions = events = 0
    for _ in range(30):  # 30 references, 30 windows each: 900 decisions
        reference = rng.normal(size=(200, 8))
        tracker = AlarmTracker(rule)
        for window in range(30):
            start, stride = rule.fold(window)
            result = two_sample_test(
                reference[start::stride],
                rng.normal(size=(40, 8)),
                alpha=rule.test_alpha,
                seed=decisions,
                permutations=99,
            )
            events += tracker.update(result.drifted) is Transition.STARTED
            decisions += 1
    assert _within_sampling_error(events, decisions, alpha), events
