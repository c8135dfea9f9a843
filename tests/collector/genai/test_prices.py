"""The cached price path equals genai-prices' calc_price; overrides; unpriced reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from collector.genai.prices import PriceBook, Unpriced, load_overrides

T = 1_790_000_000_000_000_000  # 2026-09-21
OVERRIDES = Path(__file__).parents[1] / "processors" / "testdata" / "cost" / "overrides.yaml"

# (provider as gen_ai.provider.name, genai-prices id, model, input, output, cache read, cache write, reasoning, tier)
TABLE = [
    ("openai", "openai", "gpt-4o", 1200, 300, 1000, 0, 0, ""),
    ("openai", "openai", "gpt-4o-2024-08-06", 1200, 300, 0, 0, 0, ""),
    ("openai", "openai", "gpt-4o-mini", 50_000, 2_000, 40_000, 0, 0, ""),
    ("openai", "openai", "o3", 5_000, 4_000, 1_024, 0, 3_000, ""),
    ("openai", "openai", "o4-mini", 5_000, 4_000, 0, 0, 3_500, ""),
    ("openai", "openai", "gpt-5", 10_000, 8_000, 6_000, 0, 5_000, "flex"),
    ("openai", "openai", "gpt-4.1", 10_000, 100, 0, 0, 0, "priority"),
    ("anthropic", "anthropic", "claude-sonnet-4-5", 3_000, 500, 2_000, 500, 0, ""),
    (
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5",
        300_000,
        500,
        100_000,
        10_000,
        0,
        "",
    ),  # long-context tier
    ("anthropic", "anthropic", "claude-haiku-4-5", 10_000, 1_000, 0, 8_000, 0, ""),
    ("anthropic", "anthropic", "claude-opus-4-5", 1_000, 2_000, 0, 0, 1_500, ""),
    ("gcp.gemini", "google", "gemini-2.5-pro", 250_000, 1_000, 0, 0, 400, ""),
    ("gcp.vertex_ai", "google", "gemini-2.5-flash", 1_000, 1_000, 500, 0, 0, ""),
    ("deepseek", "deepseek", "deepseek-chat", 1_000, 1_000, 600, 0, 0, ""),
    ("mistral_ai", "mistral", "mistral-large-2512", 1_000, 1_000, 0, 0, 0, ""),
    ("x_ai", "x-ai", "grok-4.3", 1_000, 1_000, 0, 0, 0, ""),
    ("aws.bedrock", "aws", "anthropic.claude-3-haiku-20240307-v1:0", 1_000, 1_000, 0, 0, 0, ""),
]


@pytest.mark.parametrize(
    ("otel_provider", "provider_id", "model", "i", "o", "cr", "cw", "r", "tier"), TABLE, ids=lambda v: str(v)
)
def test_cached_rates_equal_calc_price(
    otel_provider: str, provider_id: str, model: str, i: int, o: int, cr: int, cw: int, r: int, tier: str
) -> None:
    book = PriceBook()
    when = datetime.fromtimestamp(T / 1e9, tz=UTC)
    expected = calc_price(
        Usage(
            input_tokens=i,
            output_tokens=o,
            cache_read_tokens=cr,
            cache_write_tokens=cw,
            output_reasoning_tokens=r,
        ),
        model,
        provider_id=provider_id,
        genai_request_timestamp=when,
        price_context={"service_tier": tier} if tier else None,
    ).total_price
    for _ in range(2):  # miss, then the cached path
        got = book.cost(otel_provider, model, T, i, o, cr, cw, r, service_tier=tier)
        assert got == pytest.approx(float(expected), rel=1e-12, abs=1e-15)


def test_time_of_day_prices_are_keyed_by_window() -> None:
    book = PriceBook()
    for hour in (3, 17):  # DeepSeek's off-peak window is in the UTC afternoon/evening
        ts = datetime(2026, 9, 21, hour, 0, tzinfo=UTC)
        ns = int(ts.timestamp() * 1e9)
        expected = calc_price(
            Usage(input_tokens=1000, output_tokens=1000),
            "deepseek-chat",
            provider_id="deepseek",
            genai_request_timestamp=ts,
        )
        assert book.cost("deepseek", "deepseek-chat", ns, 1000, 1000) == pytest.approx(
            float(expected.total_price), rel=1e-12
        )


def test_dated_prices_follow_the_span_time() -> None:
    book = PriceBook()
    for day in (datetime(2025, 1, 2, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)):
        ns = int(day.timestamp() * 1e9)
        expected = calc_price(
            Usage(input_tokens=1000, output_tokens=1000),
            "gpt-5",
            provider_id="openai",
            genai_request_timestamp=day,
            price_context={"service_tier": "flex"},
        )
        assert book.cost("openai", "gpt-5", ns, 1000, 1000, service_tier="flex") == pytest.approx(
            float(expected.total_price), rel=1e-12
        )


@pytest.mark.parametrize(
    ("provider", "model", "reason"),
    [
        ("openai", "my-local-model", "unknown_model"),
        ("vllm-local", "llama-3-8b", "unknown_provider"),
        ("openai", "", "missing_model"),
    ],
)
def test_unpriced_reasons(provider: str, model: str, reason: str) -> None:
    with pytest.raises(Unpriced) as caught:
        PriceBook().cost(provider, model, T, 10, 10)
    assert caught.value.reason == reason


def test_overrides_come_first() -> None:
    book = PriceBook(load_overrides(OVERRIDES))
    # regex on a fine-tuned model; cache read priced as given
    assert book.cost(
        "openai", "ft:gpt-4o-mini-2024-07-18:acme:v3", T, 1_000_000, 1_000_000, 500_000
    ) == pytest.approx(0.5 * 0.30 + 0.5 * 0.15 + 1.20)
    # exact model, any provider, per-request price, reasoning defaults to the output rate
    assert book.cost("", "acme-llama-70b", T, 1_000_000, 1_000_000, reasoning=400_000) == pytest.approx(
        0.10 + 0.20 + 0.001
    )
    # an entry that expired: genai-prices again
    expected = calc_price(
        Usage(input_tokens=1000, output_tokens=100),
        "gpt-4o",
        provider_id="openai",
        genai_request_timestamp=datetime.fromtimestamp(T / 1e9, tz=UTC),
    )
    assert book.cost("openai", "gpt-4o", T, 1000, 100) == pytest.approx(float(expected.total_price))
    before = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp() * 1e9)
    assert book.cost("openai", "gpt-4o", before, 1_000_000, 0) == pytest.approx(1.0)
    # a discount on genai-prices' price
    base = PriceBook().cost("anthropic", "claude-haiku-4-5", T, 1000, 100)
    assert book.cost("anthropic", "claude-haiku-4-5", T, 1000, 100) == pytest.approx(base * 0.75)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("overrides: [{model: x}]", "expected exactly one of `prices` or `discount`"),
        (
            "overrides: [{model: x, model_regex: y, discount: 0.1}]",
            "expected at most one of `model` or `model_regex`",
        ),
        ("overrides: [{model_regex: '(', discount: 0.1}]", "invalid regular expression"),
        ("overrides: [{model: x, discount: 1.5}]", "less than 1"),
        ("overrides: [{model: x, prices: {input: 1}}]", "Field required"),
        ("overrides: [{model: x, price: {input: 1, output: 1}}]", "Extra inputs are not permitted"),
    ],
)
def test_override_file_mistakes_are_reported(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        load_overrides(path)
    assert str(caught.value).startswith(f"{path}: overrides::0")
    assert message in str(caught.value)


def test_example_override_file_is_valid() -> None:
    example = Path(__file__).parents[3] / "config" / "prices" / "overrides.example.yaml"
    assert len(load_overrides(example).overrides) == 3
