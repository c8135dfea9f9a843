"""Drift benchmark: decision speed at window 100 and 500 (384-d), false-alarm rate and power, one table.

Run from the repository root::

    .venv/bin/python bench/drift/run.py            # about two minutes on 2 vCPUs
    .venv/bin/python bench/drift/run.py --quick    # fewer trials, for a smoke run

See README.md beside this file for what each row measures.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

# One BLAS thread, set before numpy loads: the drift worker is one thread beside ingestion, and on a busy
# 2-vCPU machine multi-threaded BLAS made small kernel products about 7x slower (see README).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collector.drift.embedders import HashingEmbedder
from collector.drift.statistics import (
    AlarmRule,
    AlarmTracker,
    DriftResult,
    Transition,
    chi_squared_test,
    ks_test,
    two_sample_test,
)
from tests.collector.drift._helpers import prompts

DIMS = 384


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class EmbeddingSource:
    """Sentence-embedding-like vectors: unit vectors around a few topic centroids in 384 dimensions."""

    def __init__(self, seed: int, topics: int = 8) -> None:
        rng = np.random.default_rng(seed)
        self.centroids = _unit(rng.normal(size=(topics, DIMS)))

    def sample(self, rng: np.random.Generator, size: int, weights: np.ndarray) -> np.ndarray:
        picks = rng.choice(len(self.centroids), size=size, p=weights / weights.sum())
        return _unit(
            self.centroids[picks] * 2.0 + rng.normal(size=(size, DIMS)) / math.sqrt(DIMS) * 3.0
        ).astype(np.float32)


def _ci(hits: int, trials: int) -> str:
    low, high = stats.binomtest(hits, trials).proportion_ci(0.95)
    return f"{hits / trials:.3f} [{low:.3f}, {high:.3f}]"


def speed_rows(quick: bool) -> list[list[str]]:
    """Latency of one MMD decision as the processor runs it: defaults (alpha 0.01, 7 signals, k = 2),
    so each window is tested against one of two reference folds (half the reference)."""
    rule = AlarmRule(alpha=0.01, consecutive=2, signals=7)
    permutations = rule.permutations_for()
    source = EmbeddingSource(0)
    rng = np.random.default_rng(1)
    base = np.ones(8)
    shifted = np.array([1, 1, 1, 1, 1, 1, 1, 4.0])
    rows = []
    for window, reference in ((100, 200), (100, 500), (500, 1000), (500, 2500)):
        fold = reference // rule.consecutive
        for label, weights in (("no drift", base), ("drift", shifted)):
            repeats = (5 if quick else 20) if window == 100 else (3 if quick else 10)
            ref = source.sample(rng, reference, base)
            latencies = []
            drifted = 0
            for i in range(repeats):
                cur = source.sample(rng, window, weights)
                start, stride = rule.fold(i)
                began = time.perf_counter()
                result = two_sample_test(
                    ref[start::stride], cur, alpha=rule.test_alpha, seed=i, permutations=permutations
                )
                latencies.append(time.perf_counter() - began)
                drifted += result.drifted
            lat = np.asarray(latencies) * 1000
            rows.append(
                [
                    f"MMD 384-d, window {window}, reference {reference} (fold {fold}), {label}",
                    f"{repeats} decisions, {permutations} permutations, level {rule.test_alpha:.4f}",
                    f"{1000 / lat.mean():.1f} decisions/s",
                    f"min {lat.min():.1f} ms, p50 {np.median(lat):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms",
                    f"{drifted}/{repeats} drifted",
                ]
            )
    return rows


def sequence(
    draw_reference: Callable[[np.random.Generator], object],
    draw_window: Callable[[np.random.Generator], object],
    test: Callable[[object, object, float, int], DriftResult],
    rule: AlarmRule,
    references: int,
    windows: int,
    seed: int,
) -> tuple[int, int, int, int, list[int]]:
    """Tumbling windows against shared references: (decisions, alarms, events, sequences with an event,
    windows to the first event per sequence)."""
    rng = np.random.default_rng(seed)
    decisions = alarms = events = 0
    first_event: list[int] = []
    for r in range(references):
        reference = draw_reference(rng)
        tracker = AlarmTracker(rule)
        seen_event = False
        for w in range(windows):
            start, stride = rule.fold(w)
            result = test(_rows(reference, start, stride), draw_window(rng), rule.test_alpha, r * 1000 + w)
            decisions += 1
            alarms += result.drifted
            if tracker.update(result.drifted) is Transition.STARTED:
                events += 1
                if not seen_event:
                    first_event.append(w + 1)
                    seen_event = True
    return decisions, alarms, events, len(first_event), first_event


def _rows(reference: object, start: int, stride: int) -> object:
    """The reference fold a window is tested against (what the processor does, AlarmRule.fold)."""
    if isinstance(reference, dict):  # category labels drawn as a list, counted per fold
        raise TypeError("pass category references as label arrays")
    if isinstance(reference, np.ndarray) and reference.dtype.kind in "US":
        return dict(Counter(reference[start::stride].tolist()))
    return reference[start::stride]  # type: ignore[index]


def calibration_rows(quick: bool) -> list[list[str]]:
    rule = AlarmRule(alpha=0.05, consecutive=2)  # per signal, so that the event rate is measurable
    refs, wins = (8, 10) if quick else (30, 20)
    hashing = HashingEmbedder(dimensions=512)
    source = EmbeddingSource(2)
    base = np.ones(8)
    mix = {"billing": 0.5, "programming": 0.3, "travel": 0.2}
    labels = np.array(["stop", "length", "tool_calls", "content_filter"])

    def mmd(reference: object, current: object, alpha: float, seed: int) -> DriftResult:
        return two_sample_test(reference, current, alpha=alpha, seed=seed, permutations=199)  # type: ignore[arg-type]

    def ks(reference: object, current: object, alpha: float, seed: int) -> DriftResult:
        return ks_test(reference, current, alpha=alpha)  # type: ignore[arg-type]

    def chi2(reference: object, current: object, alpha: float, seed: int) -> DriftResult:
        return chi_squared_test(reference, current, alpha=alpha)  # type: ignore[arg-type]

    def finish(p: list[float], size: int, counted: bool) -> Callable[[np.random.Generator], object]:
        if counted:
            return lambda rng: dict(Counter(rng.choice(labels, size=size, p=p).tolist()))
        return lambda rng: rng.choice(labels, size=size, p=p)

    scenarios: list[
        tuple[str, Callable[..., object], Callable[..., object], Callable[..., DriftResult], bool]
    ] = [
        (
            "embeddings 384-d, no drift",
            lambda rng: source.sample(rng, 500, base),
            lambda rng: source.sample(rng, 100, base),
            mmd,
            False,
        ),
        (
            "embeddings 384-d, one topic 1/8 -> 1/4",
            lambda rng: source.sample(rng, 500, base),
            lambda rng: source.sample(rng, 100, np.array([1, 1, 1, 1, 1, 1, 1, 2.33])),
            mmd,
            True,
        ),
        (
            "text (hashing 512-d), no drift",
            lambda rng: hashing.embed(prompts(mix, 500, rng)),
            lambda rng: hashing.embed(prompts(mix, 100, rng)),
            mmd,
            False,
        ),
        (
            "text, 20% of prompts on a new topic",
            lambda rng: hashing.embed(prompts(mix, 500, rng)),
            lambda rng: hashing.embed(
                prompts({**{k: v * 0.8 for k, v in mix.items()}, "cooking": 0.2}, 100, rng)
            ),
            mmd,
            True,
        ),
        (
            "text, 50% of prompts on a new topic",
            lambda rng: hashing.embed(prompts(mix, 500, rng)),
            lambda rng: hashing.embed(
                prompts({**{k: v * 0.5 for k, v in mix.items()}, "cooking": 0.5}, 100, rng)
            ),
            mmd,
            True,
        ),
        (
            "output tokens (Poisson 60), no drift",
            lambda rng: rng.poisson(60, 500),
            lambda rng: rng.poisson(60, 100),
            ks,
            False,
        ),
        (
            "output tokens, mean +15%",
            lambda rng: rng.poisson(60, 500),
            lambda rng: rng.poisson(69, 100),
            ks,
            True,
        ),
        (
            "finish reasons, no drift",
            finish([0.8, 0.1, 0.09, 0.01], 500, counted=False),
            finish([0.8, 0.1, 0.09, 0.01], 100, counted=True),
            chi2,
            False,
        ),
        (
            "finish reasons, length 10% -> 25%",
            finish([0.8, 0.1, 0.09, 0.01], 500, counted=False),
            finish([0.65, 0.25, 0.09, 0.01], 100, counted=True),
            chi2,
            True,
        ),
    ]
    rows = []
    for index, (name, draw_ref, draw_win, test, shifted) in enumerate(scenarios):
        decisions, alarms, events, with_event, first = sequence(
            draw_ref, draw_win, test, rule, refs, wins, index
        )
        if shifted:
            delay = f"first event after {np.median(first):.0f} windows (median)" if first else "no event"
            rows.append(
                [
                    name,
                    f"{refs} references x {wins} windows of 100",
                    f"power per window {_ci(alarms, decisions)}",
                    f"{with_event}/{refs} sequences with an event",
                    delay,
                ]
            )
        else:
            rows.append(
                [
                    name,
                    f"{refs} references x {wins} windows of 100",
                    f"alarms per window {_ci(alarms, decisions)} (level {rule.test_alpha:.3f})",
                    f"events per decision {_ci(events, decisions)} (alpha {rule.alpha})",
                    f"{with_event}/{refs} sequences with an event",
                ]
            )
    return rows


def ingestion_rows(quick: bool) -> list[list[str]]:
    """Cost of ``DriftProcessor.process`` on the pipeline thread: feature extraction, windows, queueing;
    decisions and embedding are the worker's and are not included."""
    import logging

    from collector.component import ComponentId, CreateSettings, Kind
    from collector.processors.drift import DriftProcessor, DriftProcessorConfig
    from collector.telemetry import SelfTelemetry
    from tests.collector.drift._helpers import SpanSpec, batch

    rng = np.random.default_rng(3)
    rows = []
    for label, with_prompt in (("with prompt content", True), ("without content", False)):
        processor = DriftProcessor(
            DriftProcessorConfig(),
            CreateSettings(ComponentId("drift"), Kind.PROCESSOR, logging.getLogger("bench"), SelfTelemetry()),
        )
        texts = prompts({"billing": 1.0, "travel": 1.0}, 512, rng)
        batches = [
            batch(
                [
                    SpanSpec(prompt=texts[i] if with_prompt else None, model=f"m{i % 5}", input_tokens=int(n))
                    for i, n in enumerate(rng.poisson(100, 512))
                ]
            )
            for _ in range(4 if quick else 20)
        ]
        for b in batches:
            b.genai_spans()  # decoded once by the receiver in the collector; not this processor's cost
        began = time.perf_counter()
        for b in batches:
            processor.process(b)
        elapsed = time.perf_counter() - began
        spans = 512 * len(batches)
        rows.append(
            [
                f"process() per span, default config, {label}",
                f"{spans} spans in batches of 512, 5 groups",
                f"{spans / elapsed:,.0f} spans/s",
                f"{elapsed / spans * 1e6:.1f} us per span",
                "queue-only: the default 600 prompts/min budget skips the rest undecoded",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials")
    parser.add_argument("--only", choices=["speed", "ingestion", "calibration"], help="one group of rows")
    args = parser.parse_args()
    started = time.perf_counter()
    groups = {"speed": speed_rows, "ingestion": ingestion_rows, "calibration": calibration_rows}
    rows = [row for name, build in groups.items() if args.only in (None, name) for row in build(args.quick)]
    header = ["scenario", "trials", "rate / speed", "events / latency", "detail"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print(
        f"\n{time.perf_counter() - started:.0f} s, numpy {np.__version__}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
