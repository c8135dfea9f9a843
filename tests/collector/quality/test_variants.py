"""Variant comparison checked against scipy (and textbook formulas) on known data."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from collector.quality.variants import VariantTracker, compare_rates, compare_samples, variants_main


def test_two_proportion_z_test_matches_the_formula() -> None:
    result = compare_rates(40, 100, 55, 100)
    pooled = 95 / 200
    z = 0.15 / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert result.test == "z"
    assert result.difference == pytest.approx(0.15)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(z))
    se = math.sqrt(0.4 * 0.6 / 100 + 0.55 * 0.45 / 100)
    assert (result.ci_low, result.ci_high) == pytest.approx(
        (0.15 - 1.959964 * se, 0.15 + 1.959964 * se), rel=1e-5
    )


def test_small_counts_use_fisher_exact() -> None:
    result = compare_rates(1, 8, 6, 9)
    assert result.test == "fisher"
    assert result.p_value == pytest.approx(stats.fisher_exact([[1, 7], [6, 3]]).pvalue)
    assert compare_rates(1, 8, 6, 9, method="z").test == "z"


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(0.70, 0.10, 80)
    b = rng.normal(0.75, 0.20, 60)
    result = compare_samples(a, b)
    reference = stats.ttest_ind(b, a, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue)
    interval = reference.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))
    assert result.difference == pytest.approx(b.mean() - a.mean())


def test_mann_whitney_and_hodges_lehmann_shift() -> None:
    rng = np.random.default_rng(3)
    a = rng.lognormal(0.0, 0.5, 120)
    b = rng.lognormal(0.0, 0.5, 100) + 0.4
    result = compare_samples(a, b, method="mannwhitney")
    assert result.p_value == pytest.approx(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    assert result.difference == pytest.approx(np.median(np.subtract.outer(b, a)))
    assert result.ci_low < 0.4 < result.ci_high
    assert result.significant


def test_too_little_data_gives_nan_not_an_error() -> None:
    assert math.isnan(compare_samples([1.0], [1.0, 2.0]).p_value)
    assert math.isnan(compare_rates(0, 0, 1, 2).p_value)
    same = compare_samples([1.0, 1.0], [1.0, 1.0])
    assert (same.difference, same.p_value) == (0.0, 1.0)


def test_tracker_window_and_filtering() -> None:
    tracker = VariantTracker(
        "t", "gen_ai.prompt.version", "v1", "v2", window_s=10, score_evaluator="relevance"
    )
    for i in range(20):
        tracker.observe_score("v1", "relevance", 0.5, now=float(i))
        tracker.observe_score("v2", "relevance", 0.9, now=float(i))
        tracker.observe_score("v2", "toxicity", 0.0, now=float(i))  # other evaluator: ignored
        tracker.observe_score("v3", "relevance", 0.0, now=float(i))  # other variant: ignored
        tracker.observe_feedback("v1", i % 2 == 0, now=float(i))
        tracker.observe_span("v2", float(i), latency_s=1.0 + i, cost_usd=None)
    by_metric = {c.metric: c for c in tracker.compare(now=19.0)}
    assert (by_metric["quality_score"].n_a, by_metric["quality_score"].n_b) == (10, 10)
    assert by_metric["quality_score"].difference == pytest.approx(0.4)
    assert by_metric["positive_feedback_rate"].n_a == 10
    assert by_metric["latency"].n_b == 10 and by_metric["latency"].n_a == 0
    assert math.isnan(by_metric["cost"].p_value)


def test_cli_prints_a_table_and_json(tmp_path: Path) -> None:
    records = [
        {
            "gen_ai.prompt.version": v,
            "latency_s": 1.0 + i / 10 + (0.5 if v == "v2" else 0),
            "cost_usd": 0.001,
            "scores": {"relevance": 0.6 if v == "v1" else 0.8},
            "feedback": "positive" if i % 3 else "negative",
        }
        for i in range(30)
        for v in ("v1", "v2")
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    out = io.StringIO()
    assert variants_main(["compare", str(path), "--a", "v1", "--b", "v2"], out=out) == 0
    table = out.getvalue()
    assert table.splitlines()[0] == "gen_ai.prompt.version: B=v2 vs A=v1"
    assert "quality_score" in table and "latency" in table and "mannwhitney" in table
    out = io.StringIO()
    assert variants_main(["compare", str(path), "--a", "v1", "--b", "v2", "--json"], out=out) == 0
    rows = {row["metric"]: row for row in json.loads(out.getvalue())}
    assert rows["latency"]["difference"] == pytest.approx(0.5)
    assert rows["positive_feedback_rate"]["difference"] == pytest.approx(0.0)
    assert variants_main(["compare", str(tmp_path / "missing.jsonl"), "--a", "x", "--b", "y"]) == 2
    assert variants_main(["bogus"]) == 2


def test_cli_reads_otlp_json_traces_and_joins_feedback(tmp_path: Path) -> None:
    from google.protobuf import json_format

    from tests.collector.quality._spans import batch, chat_span

    lines = []
    for n in range(1, 41):
        version = "v1" if n % 2 else "v2"
        span = chat_span(
            n,
            prompt_version=version,
            response_id=f"r-{n}",
            finish="length" if version == "v2" and n % 4 == 0 else "stop",
            duration_s=1.0 if version == "v1" else 1.5,
            extra={"gen_ai.usage.cost.amount": 0.001, "gen_ai.usage.cost.currency": "USD"},
        )
        lines.append(json.dumps(json_format.MessageToDict(batch(span).request)))
    traces = tmp_path / "traces.jsonl"
    traces.write_text("\n".join(lines))
    feedback = tmp_path / "feedback.jsonl"
    items = [
        {"response_id": f"r-{n}", "kind": "thumbs", "value": "up" if n % 2 else "down"} for n in range(1, 41)
    ]
    items.append({"trace_id": f"{999:032x}", "kind": "copy"})
    feedback.write_text("\n".join(json.dumps(i) for i in items))
    out = io.StringIO()
    code = variants_main(
        [
            "compare",
            str(traces),
            "--a",
            "v1",
            "--b",
            "v2",
            "--feedback",
            str(feedback),
            "--evaluator",
            "completeness",
            "--json",
        ],
        out=out,
    )
    assert code == 0
    rows = {row["metric"]: row for row in json.loads(out.getvalue())}
    assert rows["quality_score"]["difference"] == pytest.approx(-0.5)  # half of v2 truncated
    assert rows["positive_feedback_rate"]["difference"] == pytest.approx(-1.0)
    assert rows["latency"]["difference"] == pytest.approx(0.5)
    assert rows["cost"]["difference"] == pytest.approx(0.0)
    table = io.StringIO()
    variants_main(["compare", str(traces), "--a", "v1", "--b", "v2", "--feedback", str(feedback)], out=table)
    assert table.getvalue().endswith("1 feedback item(s) matched no response\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"kind": "thumbs", "value": "up"}))
    assert variants_main(["compare", str(traces), "--a", "v1", "--b", "v2", "--feedback", str(bad)]) == 2
