"""Precision and recall of each detector on a labelled sample of positives and look-alikes.

``testdata/pii_sample.jsonl``: one text per line with its labelled values (``pii``: ``[kind, value]``
pairs) or, for look-alikes, an empty list and the look-alike's category (order numbers, timestamps,
versions, UUIDs, tracking numbers, prices, numeric ids, ...). A label counts as found when a finding of
the same kind covers all of it (a partial mask still leaks); a finding counts as false when it overlaps
no label of its kind. Run with ``-s`` to see the table.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_llm.redaction import Kind, Mode, RedactionConfig, Redactor

SAMPLE = Path(__file__).parent / "testdata" / "pii_sample.jsonl"

# Floors per kind. Phones have the most formats and the most digit-run look-alikes, hence the lower
# recall floor; everything else is checksum- or prefix-confirmed.
MIN_PRECISION = {kind.value: 0.95 for kind in Kind}
MIN_RECALL = {kind.value: 0.9 for kind in Kind} | {Kind.PHONE.value: 0.85}


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


def _score(
    redactor: Redactor, rows: list[dict[str, Any]]
) -> tuple[Counter[str], Counter[str], Counter[str], list[str]]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    misses: list[str] = []
    for row in rows:
        text = row["text"]
        labels = []
        for kind, value in row["pii"]:
            start = text.index(value)
            labels.append((kind, start, start + len(value)))
        findings = redactor.find(text)
        for kind, start, end in labels:
            if any(f.kind == kind and f.start <= start and f.end >= end for f in findings):
                tp[kind] += 1
            else:
                fn[kind] += 1
                misses.append(f"missed {kind}: {text!r}")
        for finding in findings:
            if not any(k == finding.kind and finding.start < e and s < finding.end for k, s, e in labels):
                fp[finding.kind] += 1
                misses.append(f"false {finding.kind} {text[finding.start : finding.end]!r} in {text!r}")
    return tp, fp, fn, misses


def test_sample_covers_every_kind_and_look_alike_category() -> None:
    rows = _rows()
    kinds = Counter(kind for row in rows for kind, _ in row["pii"])
    assert all(kinds[kind.value] >= 15 for kind in Kind), kinds
    categories = {row.get("lookalike") for row in rows if not row["pii"]}
    assert {"order_number", "timestamp", "version", "uuid", "tracking", "price", "numeric_id"} <= categories
    assert sum(1 for row in rows if not row["pii"]) >= 60


def test_precision_and_recall_per_kind(capsys: pytest.CaptureFixture[str]) -> None:
    tp, fp, fn, misses = _score(Redactor(), _rows())
    lines = [f"{'kind':<14}{'tp':>5}{'fp':>5}{'fn':>5}{'precision':>11}{'recall':>8}"]
    failures = []
    for kind in Kind:
        name = kind.value
        precision = tp[name] / (tp[name] + fp[name]) if tp[name] + fp[name] else 1.0
        recall = tp[name] / (tp[name] + fn[name]) if tp[name] + fn[name] else 1.0
        lines.append(f"{name:<14}{tp[name]:>5}{fp[name]:>5}{fn[name]:>5}{precision:>11.3f}{recall:>8.3f}")
        if precision < MIN_PRECISION[name] or recall < MIN_RECALL[name]:
            failures.append(name)
    with capsys.disabled():
        print("\n" + "\n".join(lines + misses))
    assert failures == [], f"below the floors: {failures}"


# Whole classes of look-alikes, generated rather than hand-picked: none of them may match anything.
_uuids = st.uuids().map(str)
_timestamps = st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "Z")
_epochs = st.integers(min_value=10**9, max_value=2 * 10**12).map(str)
_versions = st.lists(st.integers(min_value=0, max_value=40), min_size=2, max_size=3).map(
    lambda parts: "v" + ".".join(map(str, parts))
)
_prices = st.decimals(min_value=0, max_value=10**7, places=2).map(lambda d: f"${d:,.2f}")
_orders = st.tuples(st.integers(2000, 2030), st.integers(0, 999_999)).map(lambda t: f"ORD-{t[0]}-{t[1]:06d}")
_hex_ids = st.binary(min_size=8, max_size=32).map(bytes.hex)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(_uuids, _timestamps, _epochs, _versions, _prices, _orders, _hex_ids))
def test_generated_look_alikes_never_match(value: str) -> None:
    text = f"ref {value} done"
    assert Redactor().find(text) == [], text


@pytest.mark.parametrize("mode", [Mode.MASK, Mode.HASH])
def test_redacting_twice_changes_nothing(mode: Mode) -> None:
    """The judge's redactor runs on content the pii processor already redacted: tokens must not match."""
    redactor = Redactor(RedactionConfig(mode=mode, hash_key=b"k" * 16 if mode is Mode.HASH else None))
    for row in _rows():
        once, _ = redactor.redact_text(row["text"])
        assert once is not None
        assert redactor.redact_text(once) == (once, {}), row["text"]
