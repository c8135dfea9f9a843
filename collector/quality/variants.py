"""Variant comparison: is B really better than A on quality, user feedback, cost and latency?

Pure statistics on two samples (no I/O), plus :class:`VariantTracker`, a bounded window of recent
observations per variant that the ``quality`` processor fills and turns into metrics, and
:func:`variants_main`, the ``otel-llm variants compare`` command that prints the same as a table.

Tests, chosen per quantity (``difference`` is always B minus A):

- rates (thumbs-up rate): two-proportion z-test with a Wald interval; Fisher's exact test (p-value)
  with the same interval when any expected cell count is below 5, where the normal approximation is
  poor. ``method="z"`` or ``"fisher"`` forces one.
- scores (0..1 evaluation scores): Welch's t-test (unequal variances) with its t interval for the
  difference of means.
- latency and cost, which are skewed: Mann-Whitney U (two-sided); the difference is the
  Hodges-Lehmann shift (median of all B-A pairwise differences) with its distribution-free interval.

Usage::

    from collector.quality.variants import compare_rates, compare_samples

    compare_rates(40, 100, 55, 100)                 # thumbs up 40/100 vs 55/100
    compare_samples([0.7, 0.8, ...], [0.9, ...])    # Welch by default
    compare_samples(lat_a, lat_b, method="mannwhitney")
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
from scipy import stats

from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import events as ev

__all__ = [
    "METRICS",
    "Comparison",
    "VariantTracker",
    "attach_feedback",
    "compare_rates",
    "compare_samples",
    "format_table",
    "records_from_otlp",
    "tracker_from_records",
    "variants_main",
]

#: The quantities a tracker compares, in table order.
METRICS: tuple[str, ...] = ("quality_score", "positive_feedback_rate", "cost", "latency")

# Pairwise differences above this count are computed on an evenly thinned sample (Hodges-Lehmann).
_MAX_PAIRS = 1_000_000


@dataclass(frozen=True, slots=True)
class Comparison:
    """B versus A on one quantity: sizes, means (or rates), difference B-A, its interval, p-value."""

    metric: str
    test: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float = 0.95

    @property
    def significant(self) -> bool:
        """True when the p-value is below 1 - confidence."""
        return self.p_value < 1.0 - self.confidence


def _nan_comparison(metric: str, test: str, n_a: int, n_b: int, confidence: float) -> Comparison:
    nan = float("nan")
    return Comparison(metric, test, n_a, n_b, nan, nan, nan, nan, nan, nan, confidence)


def compare_rates(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    *,
    method: Literal["auto", "z", "fisher"] = "auto",
    confidence: float = 0.95,
    metric: str = "rate",
) -> Comparison:
    """Compare two proportions; NaN fields when either group is empty."""
    if n_a <= 0 or n_b <= 0:
        return _nan_comparison(metric, method, max(n_a, 0), max(n_b, 0), confidence)
    if not (0 <= successes_a <= n_a and 0 <= successes_b <= n_b):
        raise ValueError("successes must be between 0 and the group size")
    p_a, p_b = successes_a / n_a, successes_b / n_b
    diff = p_b - p_a
    z_crit = float(stats.norm.ppf(0.5 + confidence / 2))
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    ci = (diff - z_crit * se, diff + z_crit * se)
    if method == "auto":
        pooled = (successes_a + successes_b) / (n_a + n_b)
        expected = (pooled * n_a, (1 - pooled) * n_a, pooled * n_b, (1 - pooled) * n_b)
        method = "fisher" if min(expected) < 5 else "z"
    if method == "fisher":
        table = [[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]]
        p_value = float(stats.fisher_exact(table).pvalue)
        test = "fisher"
    else:
        pooled = (successes_a + successes_b) / (n_a + n_b)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        p_value = 1.0 if se0 == 0 else float(2 * stats.norm.sf(abs(diff) / se0))
        test = "z"
    return Comparison(metric, test, n_a, n_b, p_a, p_b, diff, ci[0], ci[1], p_value, confidence)


def _hodges_lehmann(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Median of B-A pairwise differences and its distribution-free interval (normal approximation)."""
    n_a, n_b = len(a), len(b)
    if n_a * n_b > _MAX_PAIRS:
        # Thin both samples evenly (sorted, so quantiles are kept) to stay within the pair budget.
        keep = math.sqrt(_MAX_PAIRS / (n_a * n_b))
        a = np.sort(a)[np.linspace(0, n_a - 1, max(1, int(n_a * keep))).astype(int)]
        b = np.sort(b)[np.linspace(0, n_b - 1, max(1, int(n_b * keep))).astype(int)]
        n_a, n_b = len(a), len(b)
    diffs = np.sort((b[:, None] - a[None, :]).ravel())
    total = len(diffs)
    z_crit = float(stats.norm.ppf(0.5 + confidence / 2))
    k = math.floor(n_a * n_b / 2 - z_crit * math.sqrt(n_a * n_b * (n_a + n_b + 1) / 12))
    k = min(max(k, 0), total - 1)
    return float(np.median(diffs)), float(diffs[k]), float(diffs[total - 1 - k])


def compare_samples(
    a: Sequence[float],
    b: Sequence[float],
    *,
    method: Literal["welch", "mannwhitney"] = "welch",
    confidence: float = 0.95,
    metric: str = "score",
) -> Comparison:
    """Compare two samples of a continuous quantity; NaN fields with fewer than 2 values per group."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if len(xa) < 2 or len(xb) < 2:
        return _nan_comparison(metric, method, len(xa), len(xb), confidence)
    mean_a, mean_b = float(xa.mean()), float(xb.mean())
    if method == "mannwhitney":
        p_value = float(stats.mannwhitneyu(xb, xa, alternative="two-sided").pvalue)
        shift, low, high = _hodges_lehmann(xa, xb, confidence)
        return Comparison(
            metric, "mannwhitney", len(xa), len(xb), mean_a, mean_b, shift, low, high, p_value, confidence
        )
    var_a, var_b = float(xa.var(ddof=1)), float(xb.var(ddof=1))
    diff = mean_b - mean_a
    se2 = var_a / len(xa) + var_b / len(xb)
    scale = max(abs(mean_a), abs(mean_b), 1e-300)
    # Constant samples leave only rounding noise in the variance: treat it as zero, not as evidence.
    if se2 <= (scale * 1e-12) ** 2:
        p_value = 1.0 if diff == 0 else 0.0
        return Comparison(
            metric, "welch", len(xa), len(xb), mean_a, mean_b, diff, diff, diff, p_value, confidence
        )
    se = math.sqrt(se2)
    dof = se2**2 / ((var_a / len(xa)) ** 2 / (len(xa) - 1) + (var_b / len(xb)) ** 2 / (len(xb) - 1))
    t_crit = float(stats.t.ppf(0.5 + confidence / 2, dof))
    p_value = float(2 * stats.t.sf(abs(diff) / se, dof))
    return Comparison(
        metric,
        "welch",
        len(xa),
        len(xb),
        mean_a,
        mean_b,
        diff,
        diff - t_crit * se,
        diff + t_crit * se,
        p_value,
        confidence,
    )


# -- live tracking ----------------------------------------------------------------------------------


@dataclass
class _Side:
    scores: deque[tuple[float, float]]
    latencies: deque[tuple[float, float]]
    costs: deque[tuple[float, float]]
    feedback: deque[tuple[float, bool]]


def _new_side(max_samples: int) -> _Side:
    return _Side(
        deque(maxlen=max_samples),
        deque(maxlen=max_samples),
        deque(maxlen=max_samples),
        deque(maxlen=max_samples),
    )


@dataclass(eq=False)
class VariantTracker:
    """Recent observations of two values of one dimension; thread-safe, bounded by ``max_samples``.

    ``observe_*`` take the dimension value of the span the observation came from and ignore values
    other than ``a`` and ``b``; ``compare(now)`` keeps the last ``window_s`` seconds.
    """

    name: str
    dimension: str
    a: str
    b: str
    window_s: float = 3600.0
    score_evaluator: str = ""
    max_samples: int = 10_000
    confidence: float = 0.95
    _sides: dict[str, _Side] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._sides = {self.a: _new_side(self.max_samples), self.b: _new_side(self.max_samples)}

    def observe_span(self, value: str, now: float, latency_s: float | None, cost_usd: float | None) -> None:
        """Latency and cost of one response of variant ``value``."""
        side = self._sides.get(value)
        if side is None:
            return
        with self._lock:
            if latency_s is not None:
                side.latencies.append((now, latency_s))
            if cost_usd is not None:
                side.costs.append((now, cost_usd))

    def observe_score(self, value: str, evaluator: str, score: float, now: float) -> None:
        """One evaluation score; kept when ``evaluator`` is the tracked one (any, when none is set)."""
        side = self._sides.get(value)
        if side is None or (self.score_evaluator and evaluator != self.score_evaluator):
            return
        with self._lock:
            side.scores.append((now, score))

    def observe_feedback(self, value: str, positive: bool, now: float) -> None:
        """One positive or negative feedback item joined to a response of variant ``value``."""
        side = self._sides.get(value)
        if side is None:
            return
        with self._lock:
            side.feedback.append((now, positive))

    def compare(self, now: float) -> list[Comparison]:
        """One comparison per quantity in :data:`METRICS`, over the window ending at ``now``."""
        cutoff = now - self.window_s
        with self._lock:
            sides = {}
            for key, side in self._sides.items():
                sides[key] = (
                    [v for t, v in side.scores if t > cutoff],
                    [v for t, v in side.feedback if t > cutoff],
                    [v for t, v in side.costs if t > cutoff],
                    [v for t, v in side.latencies if t > cutoff],
                )
        sa, sb = sides[self.a], sides[self.b]
        return [
            compare_samples(sa[0], sb[0], method="welch", confidence=self.confidence, metric="quality_score"),
            compare_rates(
                sum(sa[1]),
                len(sa[1]),
                sum(sb[1]),
                len(sb[1]),
                confidence=self.confidence,
                metric="positive_feedback_rate",
            ),
            compare_samples(sa[2], sb[2], method="mannwhitney", confidence=self.confidence, metric="cost"),
            compare_samples(sa[3], sb[3], method="mannwhitney", confidence=self.confidence, metric="latency"),
        ]


# -- table and CLI ----------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value == 0 or 1e-4 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def format_table(comparisons: Iterable[Comparison], a: str, b: str) -> str:
    """A fixed-width table of comparisons, one row per quantity."""
    header = ("metric", "test", f"n({a})", f"n({b})", f"mean({a})", f"mean({b})", "diff(B-A)", "ci", "p", "")
    rows = [header]
    for c in comparisons:
        ci = f"[{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]"
        mark = "*" if not math.isnan(c.p_value) and c.significant else ""
        rows.append(
            (
                c.metric,
                c.test,
                str(c.n_a),
                str(c.n_b),
                _fmt(c.mean_a),
                _fmt(c.mean_b),
                _fmt(c.difference),
                ci,
                _fmt(c.p_value),
                mark,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def _documents(path: Path) -> list[object]:
    """JSON documents of a file: one JSON array or object, or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    stripped = text.strip()
    if not stripped:
        return []
    try:
        whole = json.loads(stripped)
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(whole) if isinstance(whole, list) else [whole]


def records_from_otlp(requests: Iterable[Mapping[str, object]], dimension: str) -> list[dict[str, object]]:
    """Flat records from OTLP/JSON trace requests (``{"resourceSpans": [...]}``, as file exporters write).

    Each GenAI response span becomes one record with the dimension value, latency, cost (when the span
    carries it in USD), the heuristic scores of the ``quality`` processor, scores of
    ``gen_ai.evaluation.result`` events already on the span, and its trace, span and response ids.
    """
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from collector.genai.dimensions import Dimensions
    from collector.genai.spans import extract_genai_spans
    from collector.quality._content import RESPONSE_OPERATIONS, document_texts, read_content
    from collector.quality.heuristics import HeuristicSettings, evaluate

    reader = Dimensions([dimension])
    settings = HeuristicSettings()
    out: list[dict[str, object]] = []
    for raw in requests:
        request = json_format.ParseDict(dict(raw), ExportTraceServiceRequest(), ignore_unknown_fields=True)
        spans = extract_genai_spans(request)
        context: dict[bytes, list[str]] = {}
        for span in spans:
            if span.operation == attrs.GenAiOperationNameValues.RETRIEVAL:
                context.setdefault(span.span.trace_id, []).extend(document_texts(span))
        for span in spans:
            if span.operation not in RESPONSE_OPERATIONS:
                continue
            content = read_content(span, context.get(span.span.trace_id))
            scores: dict[str, float] = {}
            if content.has_content:
                scores.update((e.name, e.score) for e in evaluate(content, settings))
            for event in span.span.events:
                if event.name == ev.GEN_AI_EVALUATION_RESULT:
                    values = {kv.key: kv.value for kv in event.attributes}
                    name = values.get(attrs.GEN_AI_EVALUATION_NAME)
                    score = values.get(attrs.GEN_AI_EVALUATION_SCORE_VALUE)
                    if name is not None and score is not None and score.WhichOneof("value") == "double_value":
                        scores[name.string_value] = score.double_value
            cost = span.cost_usd
            if cost is None and span.cost_amount is not None and span.cost_currency in ("", "USD"):
                cost = span.cost_amount
            out.append(
                {
                    dimension: reader.values(span)[0],
                    "latency_s": span.duration_s,
                    "cost_usd": cost,
                    "scores": scores,
                    "trace_id": span.span.trace_id.hex(),
                    "span_id": span.span.span_id.hex(),
                    "response_id": span.response_id,
                }
            )
    return out


def attach_feedback(records: list[dict[str, object]], items: Iterable[Mapping[str, object]]) -> int:
    """Join feedback items (the ``/v1/feedback`` schema) to records by span, response or trace id.

    Positive and negative items are appended to the record's ``feedback`` list; returns how many items
    found no record. Invalid items raise ``ValueError`` with the reason.
    """
    from pydantic import ValidationError

    from collector.quality._feedback import FeedbackRequest, polarity

    by_span = {r.get("span_id"): r for r in records if r.get("span_id")}
    by_response = {r.get("response_id"): r for r in records if r.get("response_id")}
    by_trace = {r.get("trace_id"): r for r in records if r.get("trace_id")}
    unjoined = 0
    for position, raw in enumerate(items):
        try:
            item = FeedbackRequest.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(f"feedback item {position}: {exc.errors()[0]['msg']}") from None
        record = by_span.get(item.span_id) or by_response.get(item.response_id) or by_trace.get(item.trace_id)
        if record is None:
            unjoined += 1
            continue
        reading = polarity(item)
        if reading != "neutral":
            feedback = record.setdefault("feedback", [])
            assert isinstance(feedback, list)
            feedback.append(reading)
    return unjoined


def _number(record: Mapping[str, object], key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def tracker_from_records(
    records: Iterable[Mapping[str, object]], dimension: str, a: str, b: str, score_evaluator: str = ""
) -> VariantTracker:
    """A tracker filled from flat JSON records (see :func:`variants_main` for the record format)."""
    tracker = VariantTracker(
        "cli", dimension, a, b, window_s=math.inf, score_evaluator=score_evaluator, max_samples=10_000_000
    )
    for record in records:
        value = record.get(dimension)
        if not isinstance(value, str):
            continue
        tracker.observe_span(value, 0.0, _number(record, "latency_s"), _number(record, "cost_usd"))
        scores = record.get("scores")
        if isinstance(scores, Mapping):
            for name, score in scores.items():
                if isinstance(score, int | float) and not isinstance(score, bool):
                    tracker.observe_score(value, str(name), float(score), 0.0)
        feedback = record.get("feedback")
        for reading in feedback if isinstance(feedback, list) else [feedback]:
            if reading in ("positive", "negative"):
                tracker.observe_feedback(value, reading == "positive", 0.0)
    return tracker


def variants_main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, clock: Callable[[], float] = time.time
) -> int:
    """``otel-llm variants compare``: compare two variants from files and print a table.

    Inputs (JSON Lines, or one JSON document or array per file) are either OTLP/JSON trace requests
    (``{"resourceSpans": [...]}``, e.g. an OpenTelemetry Collector ``file`` exporter's output: scored
    with the heuristic evaluators, latency from the spans, cost from ``gen_ai.usage.cost.*``) or flat
    records carrying the dimension value plus any of ``latency_s``, ``cost_usd``, ``scores``
    (evaluator -> 0..1) and ``feedback`` (``positive`` / ``negative``, or a list of them)::

        {"gen_ai.prompt.version": "v2", "latency_s": 1.2, "cost_usd": 0.0004,
         "scores": {"relevance": 0.9}, "feedback": "positive"}

    ``--feedback FILE`` adds feedback items in the ``POST /v1/feedback`` schema, joined by id.
    Returns 0, or 2 on a usage or input error (message on stderr).
    """
    stream = out if out is not None else sys.stdout
    parser = argparse.ArgumentParser(prog="otel-llm variants", description="Compare two variants.")
    sub = parser.add_subparsers(dest="command", required=True)
    compare = sub.add_parser("compare", help="compare variant B against A")
    compare.add_argument("inputs", nargs="+", type=Path, help="OTLP/JSON trace files or flat record files")
    compare.add_argument(
        "--dimension", default=attrs.GEN_AI_PROMPT_VERSION, help="attribute that names the variant"
    )
    compare.add_argument("--a", required=True, help="baseline value")
    compare.add_argument("--b", required=True, help="candidate value")
    compare.add_argument(
        "--feedback", type=Path, action="append", default=[], help="feedback items (JSON Lines)"
    )
    compare.add_argument("--evaluator", default="", help="score to compare (default: every score)")
    compare.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if not 0 < args.confidence < 1:
        print("otel-llm variants: --confidence must be between 0 and 1", file=sys.stderr)
        return 2
    records: list[dict[str, object]] = []
    try:
        for path in args.inputs:
            documents = [d for d in _documents(path) if isinstance(d, dict)]
            otlp = [d for d in documents if "resourceSpans" in d or "resource_spans" in d]
            records.extend(records_from_otlp(otlp, args.dimension))
            records.extend(d for d in documents if "resourceSpans" not in d and "resource_spans" not in d)
        unjoined = 0
        for path in args.feedback:
            unjoined += attach_feedback(records, [d for d in _documents(path) if isinstance(d, dict)])
    except (OSError, ValueError) as exc:
        print(f"otel-llm variants: {exc}", file=sys.stderr)
        return 2
    tracker = tracker_from_records(records, args.dimension, args.a, args.b, args.evaluator)
    tracker.confidence = args.confidence
    comparisons = tracker.compare(clock())
    if args.json:
        payload = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vars_of(c).items()}
            for c in comparisons
        ]
        stream.write(json.dumps(payload, indent=2) + "\n")
    else:
        stream.write(f"{args.dimension}: B={args.b} vs A={args.a}\n")
        stream.write(format_table(comparisons, args.a, args.b))
        if unjoined:
            stream.write(f"{unjoined} feedback item(s) matched no response\n")
    return 0


def vars_of(comparison: Comparison) -> dict[str, object]:
    """The comparison's fields as a dict (slots dataclasses have no ``__dict__``)."""
    return {name: getattr(comparison, name) for name in Comparison.__dataclass_fields__}
