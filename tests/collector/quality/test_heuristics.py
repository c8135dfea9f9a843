"""Heuristic evaluators and content extraction on spans built like instrumentations send them."""

from __future__ import annotations

import json

import pytest

from collector.genai.spans import extract_genai_spans
from collector.quality import SpanContent, read_content
from collector.quality.heuristics import HeuristicSettings, evaluate, parse_json_answer, token_overlap
from tests.collector.quality._spans import any_value, batch, chat_span, retrieval_span


def _content(**kwargs: object) -> SpanContent:
    spans = extract_genai_spans(batch(chat_span(1, **kwargs)).request)  # type: ignore[arg-type]
    return read_content(spans[0])


def _scores(content: SpanContent, **settings: object) -> dict[str, tuple[float, str]]:
    return {e.name: (e.score, e.label) for e in evaluate(content, HeuristicSettings(**settings))}  # type: ignore[arg-type]


def test_reads_question_answer_finish_reason_and_tool_context() -> None:
    content = _content(tool_result="Paris is the capital of France.", output_type="json_object")
    assert content.question == "What is the capital of France?"
    assert content.answer == "The capital of France is Paris."
    assert content.finish_reasons == ("stop",)
    assert content.output_type == "json"  # legacy value mapped
    assert content.context == ["Paris is the capital of France."]
    assert content.has_content


def test_structured_attributes_are_read_like_json_strings() -> None:
    span = chat_span(1, question=None, answer=None)
    output = [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris."}], "finish_reason": "length"}
    ]
    span.attributes.add(key="gen_ai.output.messages").value.CopyFrom(any_value(output))
    span.attributes.add(key="gen_ai.system_instructions").value.CopyFrom(
        any_value([{"type": "text", "content": "Be brief."}])
    )
    content = read_content(extract_genai_spans(batch(span).request)[0])
    assert (content.answer, content.finish_reasons, content.system) == ("Paris.", ("length",), "Be brief.")


def test_unparseable_content_is_absent_not_an_error() -> None:
    content = _content(question=None, answer=None, extra={"gen_ai.output.messages": "[{not json"})
    assert not content.has_content


def test_no_content_is_reported_as_such() -> None:
    content = _content(question=None, answer=None)
    assert not content.has_content
    assert evaluate(content, HeuristicSettings(), ["completeness"])[0].label == "empty"


@pytest.mark.parametrize(
    ("kwargs", "name", "expected"),
    [
        pytest.param({}, "completeness", (1.0, "complete"), id="complete"),
        pytest.param({"answer": "  "}, "completeness", (0.0, "empty"), id="empty"),
        pytest.param({"finish": "length"}, "completeness", (0.0, "truncated"), id="truncated"),
        pytest.param(
            {"answer": "I'm sorry, but I can't help with that."}, "refusal", (0.0, "refusal"), id="refusal"
        ),
        pytest.param(
            {"answer": "I’m unable to share that."}, "refusal", (0.0, "refusal"), id="curly-apostrophe"
        ),
        pytest.param({}, "refusal", (1.0, "answered"), id="answered"),
        pytest.param(
            {"output_type": "json", "answer": '{"a": 1}'}, "json_validity", (1.0, "valid"), id="json-ok"
        ),
        pytest.param(
            {"output_type": "json", "answer": '```json\n{"a": 1}\n```'},
            "json_validity",
            (1.0, "valid"),
            id="fenced",
        ),
        pytest.param(
            {"output_type": "json", "answer": "{a: 1"}, "json_validity", (0.0, "invalid"), id="json-bad"
        ),
        pytest.param({"answer": "x" * 50}, "answer_length", (1.0, "ok"), id="length-ok"),
        pytest.param(
            {"tool_result": "Paris is the capital and largest city of France."},
            "context_overlap",
            (1.0, "grounded"),
            id="grounded",
        ),
        pytest.param(
            {"tool_result": "Berlin is in Germany.", "answer": "Rome has many churches and pizza."},
            "context_overlap",
            (0.0, "ungrounded"),
            id="ungrounded",
        ),
    ],
)
def test_evaluators(kwargs: dict[str, object], name: str, expected: tuple[float, str]) -> None:
    assert _scores(_content(**kwargs))[name] == expected


def test_length_bounds_and_refusal_deep_in_a_long_answer() -> None:
    assert _scores(_content(answer="short"), min_chars=10)["answer_length"] == (0.0, "too_short")
    assert _scores(_content(answer="x" * 100), max_chars=10)["answer_length"] == (0.0, "too_long")
    long_answer = "Paris. " * 100 + "As an AI language model I have no opinions."
    assert _scores(_content(answer=long_answer))["refusal"] == (1.0, "answered")


def test_not_applicable_evaluators_are_left_out() -> None:
    names = set(_scores(_content()))
    assert "json_validity" not in names  # no JSON asked for
    assert "context_overlap" not in names  # nothing retrieved


def test_context_from_retrieval_documents_with_text() -> None:
    request = batch(
        retrieval_span(1, 2, [{"id": "d1", "score": 0.8, "content": "The capital of France is Paris."}]),
        chat_span(1, 3),
    ).request
    retrieval, chat = extract_genai_spans(request)
    from collector.quality import document_texts

    docs = document_texts(retrieval)
    assert docs == ["The capital of France is Paris."]
    assert _scores(read_content(chat, docs))["context_overlap"][1] == "grounded"


def test_token_overlap_and_json_parsing_helpers() -> None:
    assert token_overlap("", ["x"]) is None
    assert token_overlap("the a of", ["anything"]) is None  # only stop words
    assert token_overlap("alpha beta", ["alpha gamma"]) == 0.5
    assert parse_json_answer("```\n[1, 2]\n```") == [1, 2]
    with pytest.raises(json.JSONDecodeError):
        parse_json_answer("nope")


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            {
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Capital of France?",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Paris.",
            },
            id="openinference",
        ),
        pytest.param(
            {
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": "Capital of France?",
                "gen_ai.prompt.version": "v3",  # shares the prefix, not a message
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "Paris.",
            },
            id="openllmetry",
        ),
    ],
)
def test_legacy_flattened_content(extra: dict[str, object]) -> None:
    content = _content(question=None, answer=None, extra=extra)
    assert (content.question, content.answer) == ("Capital of France?", "Paris.")


def test_legacy_content_span_events() -> None:
    span = chat_span(1, question=None, answer=None)
    for name, key, text in (
        (
            "gen_ai.content.prompt",
            "gen_ai.prompt",
            json.dumps([{"role": "user", "content": "Capital of France?"}]),
        ),
        (
            "gen_ai.content.completion",
            "gen_ai.completion",
            json.dumps([{"role": "assistant", "content": "Paris."}]),
        ),
    ):
        event = span.events.add(name=name)
        event.attributes.add(key=key).value.string_value = text
    content = read_content(extract_genai_spans(batch(span).request)[0])
    assert (content.question, content.answer) == ("Capital of France?", "Paris.")
