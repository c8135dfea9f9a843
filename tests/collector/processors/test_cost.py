"""cost processor: sources in order, cached and reasoning tokens, unpriced counts, span attributes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from collector.metrics import MetricStore
from otel_llm.conventions import metrics as m
from tests.collector.genai.builders import T0, S, batch, chat_current
from tests.collector.processors.conftest import series, total

OVERRIDES = Path(__file__).parent / "testdata" / "cost" / "overrides.yaml"
WHEN = datetime.fromtimestamp(T0 / 1e9, tz=UTC)


def reference(model: str, provider: str, **usage: int) -> float:
    return float(
        calc_price(Usage(**usage), model, provider_id=provider, genai_request_timestamp=WHEN).total_price
    )


def test_openai_cached_and_reasoning_tokens_match_genai_prices(cost: Any, store: MetricStore) -> None:
    attrs = chat_current(
        "o3",
        input_tokens=5000,
        output_tokens=4000,
        **{"gen_ai.usage.cache_read.input_tokens": 1024, "gen_ai.usage.reasoning.output_tokens": 3000},
    )
    cost().process(batch([S(attrs)]))
    expected = reference(
        "o3",
        "openai",
        input_tokens=5000,
        cache_read_tokens=1024,
        output_tokens=4000,
        output_reasoning_tokens=3000,
    )
    assert total(store, m.OTEL_LLM_COST, {"gen_ai.usage.cost.source": "local"}) == pytest.approx(
        expected, rel=1e-12
    )


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(
            ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens"), id="fe5608e"
        ),
        pytest.param(
            ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_write.input_tokens"), id="later"
        ),
        pytest.param(
            ("gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cache_creation_input_tokens"), id="alias"
        ),
    ],
)
def test_anthropic_cache_read_and_write_match_genai_prices(
    cost: Any, store: MetricStore, names: tuple[str, str]
) -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 3000,  # includes the cache, as the conventions define
        names[0]: 2000,
        names[1]: 500,
        "gen_ai.usage.output_tokens": 400,
    }
    cost().process(batch([S(attrs)]))
    expected = reference(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=3000,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        output_tokens=400,
    )
    assert total(store, m.OTEL_LLM_COST) == pytest.approx(expected, rel=1e-12)


def test_provider_reported_cost_wins(cost: Any, store: MetricStore) -> None:
    attrs = chat_current(**{"gen_ai.usage.cost.amount": 0.5, "gen_ai.usage.cost.currency": "USD"})
    cost(price_overrides=str(OVERRIDES)).process(batch([S(attrs)]))
    assert total(store, m.OTEL_LLM_COST, {"gen_ai.usage.cost.source": "provider"}) == 0.5
    assert total(store, m.OTEL_LLM_COST, {"gen_ai.usage.cost.source": "local"}) == 0


def test_override_wins_over_genai_prices(cost: Any, store: MetricStore) -> None:
    attrs = chat_current("acme-llama-70b", "openai", input_tokens=1_000_000, output_tokens=1_000_000)
    cost(price_overrides=str(OVERRIDES)).process(batch([S(attrs)]))
    assert total(store, m.OTEL_LLM_COST) == pytest.approx(0.10 + 0.20 + 0.001)
    assert total(store, m.OTEL_LLM_SPANS_UNPRICED) == 0


def test_unknown_and_unpriceable_spans_are_counted_never_zero(cost: Any, store: MetricStore) -> None:
    spans = [
        S(chat_current("my-local-model")),
        S(chat_current("llama-3", "vllm-local")),
        S(chat_current(input_tokens=None, output_tokens=None)),
        S(chat_current(**{"gen_ai.usage.cost.amount": 2.0, "gen_ai.usage.cost.currency": "EUR"})),
        S(
            chat_current(input_tokens=None, output_tokens=None, **{"error.type": "timeout"}), error=True
        ),  # nothing to price
    ]
    cost().process(batch(spans))
    reasons = {
        dict(key)["otel_llm.unpriced.reason"]: point.value
        for key, point in series(store, m.OTEL_LLM_SPANS_UNPRICED).items()
    }
    assert reasons == {
        "unknown_model": 1,
        "unknown_provider": 1,
        "missing_usage": 1,
        "unsupported_currency": 1,
    }
    assert series(store, m.OTEL_LLM_COST) == {}


def test_cost_on_the_span_when_asked(cost: Any) -> None:
    b = batch([S(chat_current()), S(chat_current(**{"gen_ai.usage.cost.amount": 0.25}))])
    cost(span_attributes=True).process(b)
    spans = b.request.resource_spans[0].scope_spans[0].spans
    first = {kv.key: kv.value for kv in spans[0].attributes}
    assert first["gen_ai.usage.cost.amount"].double_value == pytest.approx(
        reference("gpt-4o", "openai", input_tokens=100, output_tokens=20)
    )
    assert first["gen_ai.usage.cost.currency"].string_value == "USD"
    assert first["gen_ai.usage.cost.source"].string_value == "local"
    assert "gen_ai.usage.cost.source" not in {
        kv.key for kv in spans[1].attributes
    }  # provider's cost left as sent
    assert (
        b.genai_spans()[0].attributes["gen_ai.usage.cost.source"].string_value == "local"
    )  # cached view too


def test_duplicates_are_priced_once_and_dimensions_match_genai_metrics(
    cost: Any, genai_metrics: Any, store: MetricStore
) -> None:
    pricing, metrics = cost(), genai_metrics()
    b = batch(
        [
            S(chat_current(), trace=4, span=2, parent=1),
            S(chat_current(input_tokens=None, output_tokens=None), trace=4, span=1),
        ]
    )
    metrics.process(pricing.process(b))
    assert total(store, m.OTEL_LLM_COST) == pytest.approx(
        reference("gpt-4o", "openai", input_tokens=100, output_tokens=20)
    )
    assert total(store, m.OTEL_LLM_SPANS_MERGED) == 1
    assert total(store, m.OTEL_LLM_SPANS_UNPRICED) == 0
    (cost_key,) = series(store, m.OTEL_LLM_COST)
    (request_key,) = series(store, m.OTEL_LLM_REQUESTS)
    assert [kv for kv in cost_key if kv[0] != "gen_ai.usage.cost.source"] == list(request_key)


def test_agent_spans_are_not_priced_again(cost: Any, store: MetricStore) -> None:
    agent = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100,
    }
    cost().process(batch([S(agent)]))
    assert series(store, m.OTEL_LLM_COST) == {}


def test_bad_override_file_is_a_config_problem(tmp_path: Path) -> None:
    from collector.processors.cost import CostProcessorConfig

    bad = tmp_path / "prices.yaml"
    bad.write_text("overrides: [{model: x}]")
    problems = CostProcessorConfig(price_overrides=str(bad)).problems()
    assert problems == [
        ("price_overrides", f"{bad}: overrides::0: expected exactly one of `prices` or `discount`")
    ]
