"""Features from spans, reservoirs, windows and the reference files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from collector.drift.features import Signal, extract_features, last_message_text
from collector.drift.monitor import Reservoir, Window
from collector.drift.references import ReferenceStore, read_reference
from tests.collector.drift._helpers import SpanSpec, genai_spans

_MESSAGES = [
    {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
    {"role": "user", "parts": [{"type": "text", "content": "first question"}]},
    {"role": "assistant", "parts": [{"type": "tool_call", "name": "search", "arguments": {}}]},
    {"role": "tool", "parts": [{"type": "tool_call_response", "response": "42"}]},
    {
        "role": "user",
        "parts": [{"type": "text", "content": "second"}, {"type": "text", "content": "question"}],
    },
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (json.dumps(_MESSAGES), "second\nquestion"),
        (_MESSAGES, "second\nquestion"),
        (json.dumps([{"role": "user", "content": "legacy content"}]), "legacy content"),
        (
            json.dumps(
                [{"role": "user", "parts": [{"type": "blob", "modality": "image", "content": "AAAA"}]}]
            ),
            None,
        ),
        (json.dumps([{"role": "system", "parts": [{"type": "text", "content": "only system"}]}]), None),
        ("not json", None),
        (None, None),
    ],
    ids=["json-string", "structured", "legacy-content", "image-only", "no-user", "malformed", "absent"],
)
def test_last_user_message(value: object, expected: str | None) -> None:
    assert last_message_text(value, "user") == expected


def test_features_of_a_span() -> None:
    (span,) = genai_spans([SpanSpec(prompt="hello there", input_tokens=12, output_tokens=7, duration_s=0.25)])
    features = extract_features(span, want_prompt=True, want_answer=False)
    assert features.prompt_text == "hello there"
    assert features.numbers == {Signal.LATENCY: 0.25, Signal.INPUT_TOKENS: 12.0, Signal.OUTPUT_TOKENS: 7.0}
    assert features.categories == {Signal.ERROR: "none", Signal.TOOL_CALL: "no", Signal.FINISH_REASON: "stop"}

    (tool,) = genai_spans([SpanSpec(prompt=None, finish_reason="tool_calls", error_type="timeout")])
    features = extract_features(tool, want_prompt=True, want_answer=False)
    assert features.prompt_text is None
    assert features.categories[Signal.TOOL_CALL] == "yes"
    assert features.categories[Signal.ERROR] == "timeout"


def test_answer_text_and_finish_reason_from_output_messages() -> None:
    (span,) = genai_spans([SpanSpec(prompt="q", answer="the answer", finish_reason=None)])
    features = extract_features(span, want_prompt=False, want_answer=True)
    assert features.prompt_text is None and features.answer_text == "the answer"
    # No finish_reasons attribute: the output message's finish_reason is used.
    assert features.categories[Signal.FINISH_REASON] == "stop"
    (bare,) = genai_spans([SpanSpec(prompt=None, finish_reason=None)])
    categories = extract_features(bare, want_prompt=True, want_answer=True).categories
    assert Signal.FINISH_REASON not in categories and Signal.TOOL_CALL not in categories  # never guessed


def test_features_need_no_full_attribute_map() -> None:
    """Finish reasons and messages are picked in the extraction pass, so drift reads them from the span's
    picked values and never builds the full attribute map."""
    (span,) = genai_spans([SpanSpec(prompt="hello there", answer="hi", finish_reason="length")])
    features = extract_features(span, want_prompt=True, want_answer=True)
    assert features.prompt_text == "hello there" and features.answer_text == "hi"
    assert features.categories[Signal.FINISH_REASON] == "length"
    assert span._all_attributes is None


def test_reservoir_is_bounded_and_uniform() -> None:
    counts = np.zeros(100)
    for seed in range(400):
        reservoir = Reservoir(10, seed)
        for item in range(100):
            reservoir.add(item)
        assert len(reservoir.items) == 10 and reservoir.seen == 100
        counts[reservoir.items] += 1
    # Each item is kept with probability 0.1: 40 expected per item over 400 runs.
    assert counts.min() > 15 and counts.max() < 70


def test_tumbling_window_closes_by_count_and_by_age() -> None:
    window = Window(size=3, step=3, min_size=2, max_age_s=60)
    assert window.add("a", 0) is None and window.add("b", 1) is None
    assert window.add("c", 2) == ["a", "b", "c"]
    assert window.add("d", 10) is None
    assert window.due(69) is None  # only one value: below min_size
    assert window.add("e", 20) is None
    assert window.due(69) is None and window.due(70) == ["d", "e"]
    assert window.due(200) is None


def test_sliding_window_steps_and_forgets_old_values() -> None:
    window = Window(size=4, step=2, min_size=3, max_age_s=100)
    decisions = [window.add(i, float(i)) for i in range(8)]
    assert decisions == [None, None, [0, 1, 2], None, [1, 2, 3, 4], None, [3, 4, 5, 6], None]
    assert window.add(8, 500.0) is None  # everything older than max_age dropped
    assert [v for _, v in window.items] == [8]


def test_reference_store_round_trip_and_rejections(tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path)
    labels = {"service.name": "a/b", "gen_ai.request.model": "m:1"}
    vectors = np.eye(3, dtype=np.float32)
    path = store.save(labels, Signal.PROMPT_EMBEDDING, vectors, "hashing:x")
    assert path.parent == tmp_path and not list(tmp_path.glob(".tmp-*"))
    loaded = store.load(labels, Signal.PROMPT_EMBEDDING, "hashing:x")
    assert loaded is not None and np.array_equal(loaded.values, vectors) and loaded.labels == labels
    assert store.load(labels, Signal.PROMPT_EMBEDDING, "openai:y") is None  # other embedder
    store.save(labels, Signal.FINISH_REASON, np.asarray(["stop", "length"]), "hashing:x")
    categories = store.load(labels, Signal.FINISH_REASON, "anything")
    assert categories is not None and categories.values.tolist() == ["stop", "length"]
    path.write_bytes(b"garbage")
    assert read_reference(path) is None
    assert store.load(labels, Signal.PROMPT_EMBEDDING, "hashing:x") is None
