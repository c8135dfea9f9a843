"""``quality`` processor: scores per evaluator and dimension, spans without content, annotations, variants."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collector.component import Host
from collector.genai.spans import any_value
from collector.metrics import MetricStore, shared_store
from collector.processors.quality import FACTORY as QUALITY
from collector.processors.quality import QualityProcessor, QualityProcessorConfig
from tests.collector.quality._spans import batch, build, chat_span, make_host, points, retrieval_span, value


@pytest.fixture
def host() -> Host:
    return make_host()


@pytest.fixture
def quality(host: Host) -> Iterator[Callable[..., QualityProcessor]]:
    started: list[QualityProcessor] = []

    def make(**config: Any) -> QualityProcessor:
        processor: QualityProcessor = build(QUALITY, host, **config)
        processor.start(host)
        started.append(processor)
        return processor

    yield make
    for processor in started:
        processor.shutdown(1)


def test_scores_by_evaluator_model_prompt_version_and_service(
    host: Host, quality: Callable[..., QualityProcessor]
) -> None:
    processor = quality()
    out = processor.process(
        batch(
            chat_span(1, prompt_version="v1"),
            chat_span(2, prompt_version="v2", finish="length", model="gpt-4o"),
            service="support-bot",
        )
    )
    assert out is not None
    store = shared_store(host)
    name = "otel_llm.evaluation.score"
    assert (
        value(store, name, **{"gen_ai.evaluation.name": "completeness", "gen_ai.prompt.version": "v1"}) == 1
    )
    truncated = {
        "gen_ai.evaluation.name": "completeness",
        "gen_ai.evaluation.score.label": "truncated",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.prompt.version": "v2",
        "gen_ai.provider.name": "openai",
    }
    [(_, point)] = [
        (a, p) for a, p in points(store, name) if all(a.get(k) == v for k, v in truncated.items())
    ]
    assert point.total == 0.0 and point.count == 1
    assert store.resource_attributes(point.resource) == (("service.name", "support-bot"),)
    assert value(store, "otel_llm.evaluation.spans_without_content") == 0


def test_spans_without_content_are_counted_not_scored(
    host: Host, quality: Callable[..., QualityProcessor]
) -> None:
    processor = quality()
    processor.process(
        batch(chat_span(1, question=None, answer=None), chat_span(2), chat_span(3, answer=None))
    )
    store = shared_store(host)
    assert (
        value(store, "otel_llm.evaluation.spans_without_content", **{"gen_ai.request.model": "gpt-4o-mini"})
        == 2
    )
    assert value(store, "otel_llm.evaluation.score", **{"gen_ai.evaluation.name": "completeness"}) == 1


def test_other_operations_and_the_judges_own_spans_are_ignored(
    host: Host, quality: Callable[..., QualityProcessor]
) -> None:
    processor = quality()
    processor.process(batch(chat_span(1, operation="embeddings"), retrieval_span(1, 2, [{"id": "a"}])))
    processor.process(batch(chat_span(3), service="otel-llm-judge"))
    store = shared_store(host)
    assert points(store, "otel_llm.evaluation.score") == []
    assert points(store, "otel_llm.evaluation.spans_without_content") == []


def test_retrieved_documents_of_an_earlier_batch_ground_the_answer(
    host: Host, quality: Callable[..., QualityProcessor]
) -> None:
    processor = quality(evaluators=["context_overlap"])
    processor.process(
        batch(retrieval_span(9, 1, [{"id": "d", "content": "The capital of France is Paris."}]))
    )
    processor.process(batch(chat_span(9, 2), chat_span(10, 3, tool_result="Berlin lies on the Spree.")))
    store = shared_store(host)
    assert value(store, "otel_llm.evaluation.score", **{"gen_ai.evaluation.score.label": "grounded"}) == 1
    assert value(store, "otel_llm.evaluation.score", **{"gen_ai.evaluation.score.label": "ungrounded"}) == 1


def _attributes(kvs: Any) -> dict[str, object]:
    return {kv.key: any_value(kv.value) for kv in kvs}


def test_annotate_events(quality: Callable[..., QualityProcessor]) -> None:
    processor = quality(annotate="event", evaluators=["completeness", "refusal"])
    incoming = batch(chat_span(1, response_id="chatcmpl-1", answer="I cannot help with that."))
    cached = incoming.genai_spans()[0]
    cached.cost_usd = 0.5  # as the cost processor would have set it
    out = processor.process(incoming)
    assert out is not None
    span = out.request.resource_spans[0].scope_spans[0].spans[0]
    events = [(_attributes(e.attributes), e.name) for e in span.events]
    assert [name for _, name in events] == ["gen_ai.evaluation.result"] * 2
    refusal = next(a for a, _ in events if a["gen_ai.evaluation.name"] == "refusal")
    assert refusal["gen_ai.evaluation.score.value"] == 0.0
    assert refusal["gen_ai.evaluation.score.label"] == "refusal"
    assert refusal["gen_ai.response.id"] == "chatcmpl-1"
    assert out.genai_spans()[0] is cached and cached.cost_usd == 0.5  # earlier processors' work is kept


def test_annotate_attributes_keeps_the_worst_result_and_never_overwrites(
    quality: Callable[..., QualityProcessor],
) -> None:
    processor = quality(annotate="attributes")
    out = processor.process(
        batch(
            chat_span(1, finish="length"),
            chat_span(2, extra={"gen_ai.evaluation.name": "app-own", "gen_ai.evaluation.score.value": 0.3}),
        )
    )
    assert out is not None
    first, second = (_attributes(s.attributes) for s in out.request.resource_spans[0].scope_spans[0].spans)
    assert out.genai_spans()[0].attribute("gen_ai.evaluation.name") == "completeness"  # cached view in step
    assert first["gen_ai.evaluation.name"] == "completeness" and first["gen_ai.evaluation.score.value"] == 0.0
    assert second["gen_ai.evaluation.name"] == "app-own"
    assert list(second).count("gen_ai.evaluation.name") == 1


def test_config_problems() -> None:
    config = QualityProcessorConfig.model_validate(
        {
            "evaluators": ["completeness", "bogus"],
            "min_answer_chars": 10,
            "max_answer_chars": 5,
            "variants": [{"a": "v1", "b": "v1"}, {"a": "x", "b": "y"}, {"a": "x", "b": "y"}],
        }
    )
    assert config.problems() == [
        (
            "evaluators::1",
            "expected one of completeness, refusal, json_validity, answer_length, context_overlap, "
            "got 'bogus'",
        ),
        ("min_answer_chars", "must not exceed max_answer_chars"),
        ("variants::0::b", "expected a value different from a, got 'v1' twice"),
        ("variants::2::name", "duplicate variant name 'x_vs_y'"),
    ]


def test_variant_comparison_metrics(host: Host, quality: Callable[..., QualityProcessor]) -> None:
    processor = quality(
        variants=[{"name": "prompt", "a": "v1", "b": "v2", "score_evaluator": "answer_length"}],
        max_answer_chars=40,
        variant_interval="1h",
    )
    spans = []
    for n in range(1, 41):
        version = "v1" if n % 2 else "v2"
        # v2 answers are often too long (score 0) and slower.
        answer = "Paris." if version == "v1" or n % 4 == 0 else "Paris is the capital; " * 5
        spans.append(
            chat_span(n, prompt_version=version, answer=answer, duration_s=1.0 if version == "v1" else 2.0)
        )
    processor.process(batch(*spans))
    processor.process(batch(chat_span(99, prompt_version="v3")))  # another value: ignored
    processor.export_variants()
    store: MetricStore = shared_store(host)
    score = {"otel_llm.variant.name": "prompt", "otel_llm.variant.metric": "quality_score"}
    assert value(store, "otel_llm.variant.difference", **score) == pytest.approx(-0.5)
    assert value(store, "otel_llm.variant.p_value", **score) < 0.01
    assert (
        value(store, "otel_llm.variant.ci.lower", **score)
        < -0.5
        < value(store, "otel_llm.variant.ci.upper", **score)
    )
    latency = {"otel_llm.variant.metric": "latency", "otel_llm.variant.test": "mannwhitney"}
    assert value(store, "otel_llm.variant.difference", **latency) == pytest.approx(1.0)
    assert value(store, "otel_llm.variant.samples", **latency, **{"otel_llm.variant.side": "a"}) == 20
    # Not enough data for feedback or cost yet: no value rather than NaN.
    assert value(store, "otel_llm.variant.p_value", **{"otel_llm.variant.metric": "cost"}) == 0


def test_variant_thread_exports_and_stops(host: Host, quality: Callable[..., QualityProcessor]) -> None:
    processor = quality(variants=[{"a": "v1", "b": "v2"}], variant_interval="50ms")
    processor.process(batch(*(chat_span(n, prompt_version=f"v{1 + n % 2}") for n in range(10))))
    deadline = time.monotonic() + 5
    while not points(shared_store(host), "otel_llm.variant.samples") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert points(shared_store(host), "otel_llm.variant.samples")
    processor.shutdown(1)
    assert processor._thread is None


def test_process_is_fast_enough_for_every_span(quality: Callable[..., QualityProcessor]) -> None:
    processor = quality()
    spans = [chat_span(n, tool_result="Paris is the capital of France.") for n in range(1, 513)]
    started = time.perf_counter()
    for _ in range(5):
        processor.process(batch(*spans))
    per_span_us = (time.perf_counter() - started) / (5 * 512) * 1e6
    assert per_span_us < 2000  # generous bound for a shared 2-core machine; typically ~100 µs


def test_application_evaluation_events_are_recorded(
    host: Host, quality: Callable[..., QualityProcessor]
) -> None:
    span = chat_span(1, prompt_version="v1")
    for name, score in (("helpfulness", 0.8), ("out_of_range", 7.0)):
        event = span.events.add(name="gen_ai.evaluation.result")
        event.attributes.add(key="gen_ai.evaluation.name").value.string_value = name
        event.attributes.add(key="gen_ai.evaluation.score.value").value.double_value = score
    quality(evaluators=[]).process(batch(span))
    store = shared_store(host)
    assert value(store, "otel_llm.evaluation.score", **{"gen_ai.evaluation.name": "helpfulness"}) == 1
    assert value(store, "otel_llm.evaluation.score", **{"gen_ai.evaluation.name": "out_of_range"}) == 0
