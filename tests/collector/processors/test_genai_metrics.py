"""genai_metrics: derived values, convention generations, merging, agents, retrieval, client_metrics."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector.data import MetricsBatch
from collector.metrics import MetricStore
from otel_llm.conventions import metrics as m
from tests.collector.genai.builders import T0, S, batch, chat_current, chat_legacy, chat_openinference
from tests.collector.processors.conftest import count, make, make_host, series, total

DURATION = m.GEN_AI_CLIENT_OPERATION_DURATION
TOKENS = m.GEN_AI_CLIENT_TOKEN_USAGE


def test_chat_span_derives_requests_duration_tokens_ttfc(genai_metrics: Any, store: MetricStore) -> None:
    processor = genai_metrics()
    spans = [
        S(
            chat_current(input_tokens=100, output_tokens=20, **{"gen_ai.response.time_to_first_chunk": 0.25}),
            1.5,
        ),
        S(chat_current(input_tokens=300, output_tokens=40), 0.5),
        S(
            chat_current(input_tokens=None, output_tokens=None, **{"error.type": "RateLimitError"}),
            0.1,
            error=True,
        ),
    ]
    out = processor.process(batch(spans))
    assert out is not None
    assert total(store, m.OTEL_LLM_REQUESTS) == 3
    assert total(store, m.OTEL_LLM_ERRORS, {"error.type": "RateLimitError"}) == 1
    assert count(store, DURATION) == 3
    assert total(store, DURATION) == pytest.approx(2.1)
    assert total(store, TOKENS, {"gen_ai.token.type": "input"}) == 400
    assert total(store, TOKENS, {"gen_ai.token.type": "output"}) == 60
    assert count(store, m.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK) == 1
    assert total(store, m.OTEL_LLM_USAGE_MISSING) == 0  # the failed call is not "missing usage"
    labels = dict(next(iter(series(store, m.OTEL_LLM_REQUESTS))))
    assert labels == {
        "service.name": "svc",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o",
    }


def _snapshot_values(store: MetricStore) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for snap in store.snapshot():
        for point in snap.points:
            key = (snap.name, tuple((k, v) for k, v in point.attributes if v != ""))
            out[str(key)] = (point.value, point.count, point.total, point.bucket_counts)
    return out


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param(chat_legacy(), id="legacy"),
        pytest.param(chat_openinference(), id="openinference"),
        pytest.param(
            {**chat_current(), "gen_ai.provider.name": "", "gen_ai.system": "openai"},
            id="current-with-system",
        ),
    ],
)
def test_every_convention_gives_identical_metrics(attributes: dict[str, Any]) -> None:
    results = []
    for attrs in (chat_current(), attributes):
        host = make_host()
        from collector.processors.genai_metrics import FACTORY

        processor = make(FACTORY, host)
        processor.process(batch([S(attrs, 0.7)]))
        results.append(_snapshot_values(processor.store))
    assert results[0] == results[1]


def test_provider_value_renames_and_anthropic_cache_accounting(
    genai_metrics: Any, store: MetricStore
) -> None:
    processor = genai_metrics()
    raw_anthropic = {
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 10,  # raw Anthropic count: cache left out
        "gen_ai.usage.cache_read_input_tokens": 900,
        "gen_ai.usage.cache_creation_input_tokens": 90,
        "gen_ai.usage.output_tokens": 5,
    }
    processor.process(
        batch([S(raw_anthropic), S({**chat_current(), "gen_ai.provider.name": "az.ai.openai"})])
    )
    assert total(store, TOKENS, {"gen_ai.provider.name": "anthropic", "gen_ai.token.type": "input"}) == 1000
    assert total(store, m.OTEL_LLM_REQUESTS, {"gen_ai.provider.name": "azure.ai.openai"}) == 1


def test_extra_dimensions_from_span_and_resource(genai_metrics: Any, store: MetricStore) -> None:
    processor = genai_metrics(extra_dimensions=["user", "feature"])
    processor.process(batch([S({**chat_current(), "user": "u1"})], resource={"feature": "search"}))
    (labels,) = series(store, m.OTEL_LLM_REQUESTS)
    assert dict(labels)["user"] == "u1"
    assert dict(labels)["feature"] == "search"


def test_nested_duplicates_are_counted_once(genai_metrics: Any, store: MetricStore) -> None:
    processor = genai_metrics()
    # anthropic 1.x native span (no usage) around our client span (usage); child arrives first.
    child = S(chat_current("claude-haiku-4-5", "anthropic", 50, 5), 0.9, trace=7, span=2, parent=1)
    parent = S(chat_current("claude-haiku-4-5", "anthropic", None, None), 1.0, trace=7, span=1)
    # same response id in two unrelated spans
    first = S(chat_current(**{"gen_ai.response.id": "resp-1"}), trace=8, span=3)
    second = S(chat_current(**{"gen_ai.response.id": "resp-1"}), trace=8, span=4)
    processor.process(batch([child, first]))
    processor.process(batch([parent, second]))
    assert total(store, m.OTEL_LLM_REQUESTS) == 2
    assert total(store, TOKENS, {"gen_ai.token.type": "input"}) == 150
    assert total(store, m.OTEL_LLM_SPANS_MERGED) == 2
    assert total(store, m.OTEL_LLM_USAGE_MISSING) == 0


def test_parent_without_usage_first_then_child_with_usage(genai_metrics: Any, store: MetricStore) -> None:
    processor = genai_metrics()
    processor.process(batch([S(chat_current(input_tokens=None, output_tokens=None), trace=9, span=1)]))
    processor.process(batch([S(chat_current(input_tokens=70, output_tokens=7), trace=9, span=2, parent=1)]))
    assert total(store, m.OTEL_LLM_REQUESTS) == 1
    assert total(store, TOKENS, {"gen_ai.token.type": "input"}) == 70


def test_two_spans_with_usage_are_two_calls(genai_metrics: Any, store: MetricStore) -> None:
    processor = genai_metrics()
    processor.process(
        batch([S(chat_current(), trace=3, span=1), S(chat_current(), trace=3, span=2, parent=1)])
    )
    assert total(store, m.OTEL_LLM_REQUESTS) == 2


def test_agents_tools_and_calls_per_invocation(genai_metrics: Any, store: MetricStore) -> None:
    processor = genai_metrics()
    agent = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "planner",
        "gen_ai.provider.name": "openai",
    }
    tool = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search",
        "gen_ai.tool.type": "function",
    }
    sec = 1_000_000_000
    spans = [
        S(chat_current(), 1.0, start_ns=T0 + 1 * sec, trace=5),
        S(tool, 0.5, start_ns=T0 + 3 * sec, trace=5),
        S(chat_current(), 1.0, start_ns=T0 + 4 * sec, trace=5),
        S(agent, 10.0, start_ns=T0, trace=5),
        S(chat_current(), 1.0, start_ns=T0 + 20 * sec, trace=5),  # outside the agent: not its call
    ]
    processor.process(batch(spans))
    assert count(store, m.GEN_AI_INVOKE_AGENT_DURATION, {"gen_ai.agent.name": "planner"}) == 1
    assert total(store, m.GEN_AI_INVOKE_AGENT_INFERENCE_CALLS) == 2
    assert total(store, m.GEN_AI_INVOKE_AGENT_TOOL_CALLS) == 1
    assert total(store, m.GEN_AI_EXECUTE_TOOL_DURATION, {"gen_ai.tool.name": "search"}) == pytest.approx(0.5)
    # agent spans are not requests, and their usage (their children's) is not counted again
    assert total(store, m.OTEL_LLM_REQUESTS) == 3


def test_retrieval_documents_and_scores(genai_metrics: Any, store: MetricStore) -> None:
    processor = genai_metrics()
    docs = [{"id": "a", "score": 0.91}, {"id": "b", "score": 0.42}, {"id": "c"}]
    retrieval = {
        "gen_ai.operation.name": "retrieval",
        "gen_ai.data_source.id": "kb",
        "gen_ai.retrieval.documents": docs,
    }
    openinference = {
        "openinference.span.kind": "RETRIEVER",
        "retrieval.documents.0.document.id": "x",
        "retrieval.documents.0.document.score": 0.55,
        "retrieval.documents.1.document.id": "y",
    }
    processor.process(batch([S(retrieval, 0.2), S(openinference, 0.3)]))
    assert count(store, DURATION, {"gen_ai.operation.name": "retrieval"}) == 2
    assert total(store, m.OTEL_LLM_RETRIEVAL_DOCUMENTS) == 5
    assert count(store, m.OTEL_LLM_RETRIEVAL_SCORE) == 3
    assert total(store, m.OTEL_LLM_RETRIEVAL_SCORE) == pytest.approx(0.91 + 0.42 + 0.55)


def test_client_metrics_auto_stops_when_the_application_sends_them(
    genai_metrics: Any, store: MetricStore
) -> None:
    processor = genai_metrics()
    processor.process(batch([S(chat_current())], service="app"))
    assert count(store, DURATION) == 1
    own = ExportMetricsServiceRequest()
    rm = own.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "app"
    rm.scope_metrics.add().metrics.add(name=m.GEN_AI_CLIENT_OPERATION_DURATION)
    processor.process(MetricsBatch(own))
    processor.process(batch([S(chat_current())], service="app"))
    processor.process(batch([S(chat_current())], service="other"))
    assert count(store, DURATION) == 2  # "app" stopped, "other" did not
    assert total(store, m.OTEL_LLM_REQUESTS) == 3  # ours always


def test_client_metrics_never(genai_metrics: Any, store: MetricStore) -> None:
    processor = genai_metrics(client_metrics="never")
    processor.process(batch([S(chat_current())]))
    assert count(store, DURATION) == 0
    assert total(store, m.OTEL_LLM_REQUESTS) == 1


def test_every_series_carries_the_instance_id(genai_metrics: Any, store: MetricStore) -> None:
    from collector.metrics import snapshot_to_otlp

    genai_metrics().process(batch([S(chat_current())]))
    request = snapshot_to_otlp(store, store.snapshot())
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                assert kind is not None
                for point in getattr(metric, kind).data_points:
                    keys = {kv.key: kv.value.string_value for kv in point.attributes}
                    assert keys["otel_llm.instance.id"] == "test-instance"


def test_config_problems() -> None:
    from collector.processors.genai_metrics import GenAIMetricsProcessorConfig

    config = GenAIMetricsProcessorConfig(extra_dimensions=["service.name", ""])
    assert config.problems() == [
        ("extra_dimensions::0", "'service.name' is listed twice"),
        ("extra_dimensions::1", "expected an attribute name, got an empty string"),
    ]
