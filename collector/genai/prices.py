"""Prices for GenAI usage: an override file first, then ``genai-prices`` through a rate cache.

``genai-prices`` resolves a model in about 200 µs, too slow per span. :class:`PriceBook` resolves each
(provider, model, UTC day, price context, time-of-day window) once and keeps linear rates per token
kind: the price of a call is affine in its token counts within one tier, so the rates are measured by
asking ``ModelPrice.calc_price`` for a handful of probe usages and the hot path is six multiplications.
Tiered models (whole request billed at the tier its input reaches) get one rate set per tier, measured
on first use. ``tests/collector/genai/test_prices.py`` checks the cached path against ``calc_price``.

Token kinds follow the conventions: ``input`` includes cache reads and writes, ``output`` includes
reasoning. Cache writes are priced as 5-minute writes (spans do not say which).

The override file (YAML) comes first::

    overrides:
      - model: acme-ft-1               # exact model name (request or response model), or
        model_regex: "^ft:gpt-4o-mini" # a regular expression (search)
        provider: openai               # optional, gen_ai.provider.name
        effective_from: 2026-01-01     # optional, UTC dates of the span's start, inclusive
        effective_until: 2026-07-01    # optional, exclusive
        prices:                        # USD per million tokens (request: USD per call)
          input: 0.30
          output: 1.20
          cache_read: 0.15             # default: input
          cache_write: 0.375           # default: input
          reasoning: 1.20              # default: output
          request: 0
      - provider: anthropic
        model_regex: ".*"
        discount: 0.15                 # 15 % off the genai-prices price

The first matching entry wins, so list specific entries before broad ones.
"""

from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from otel_llm.conventions import attributes as attrs

__all__ = [
    "PROVIDER_IDS",
    "PriceBook",
    "PriceOverride",
    "PriceOverrides",
    "Rates",
    "Unpriced",
    "load_overrides",
]

_Reason = attrs.OtelLlmUnpricedReasonValues

#: gen_ai.provider.name -> genai-prices provider id, where they differ.
PROVIDER_IDS: dict[str, str] = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
    "moonshot_ai": "moonshotai",
}
_NS_PER_DAY = 86_400 * 10**9
_MTOK = 1_000_000.0


class Unpriced(Exception):
    """A span cannot be priced; ``reason`` is an ``otel_llm.unpriced.reason`` value."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token of each kind (and per request) within one tier; affine, so exact for that tier."""

    input: float
    cache_read: float
    cache_write: float
    output: float
    reasoning: float
    request: float

    def cost(
        self, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, reasoning: int
    ) -> float:
        """Price of one call; cached and reasoning counts are subsets of input and output."""
        return (
            self.request
            + (input_tokens - cache_read - cache_write) * self.input
            + cache_read * self.cache_read
            + cache_write * self.cache_write
            + (output_tokens - reasoning) * self.output
            + reasoning * self.reasoning
        )


# -- overrides ---------------------------------------------------------------------------------------


class OverridePrices(BaseModel):
    """USD per million tokens; ``request`` in USD per call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)
    reasoning: float | None = Field(None, ge=0)
    request: float = Field(0.0, ge=0)

    def rates(self) -> Rates:
        return Rates(
            input=self.input / _MTOK,
            cache_read=(self.input if self.cache_read is None else self.cache_read) / _MTOK,
            cache_write=(self.input if self.cache_write is None else self.cache_write) / _MTOK,
            output=self.output / _MTOK,
            reasoning=(self.output if self.reasoning is None else self.reasoning) / _MTOK,
            request=self.request,
        )


class PriceOverride(BaseModel):
    """One entry of the override file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    model_regex: str | None = None
    provider: str | None = None
    effective_from: date | None = None
    effective_until: date | None = None
    prices: OverridePrices | None = None
    discount: float | None = Field(None, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> PriceOverride:
        if (self.prices is None) == (self.discount is None):
            raise ValueError("expected exactly one of `prices` or `discount`")
        if self.model is not None and self.model_regex is not None:
            raise ValueError("expected at most one of `model` or `model_regex`")
        if self.model_regex is not None:
            try:
                re.compile(self.model_regex)
            except re.error as exc:
                raise ValueError(f"model_regex: invalid regular expression: {exc}") from None
        if self.effective_from and self.effective_until and self.effective_until <= self.effective_from:
            raise ValueError("effective_until must be after effective_from")
        return self


class PriceOverrides(BaseModel):
    """The override file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overrides: list[PriceOverride] = Field(default_factory=list)


def load_overrides(path: str | Path) -> PriceOverrides:
    """Read and validate an override file; raise ``ValueError`` naming the file and entry."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    try:
        return PriceOverrides.model_validate(raw or {})
    except ValidationError as exc:
        details = "; ".join(
            f"{'::'.join(str(p) for p in error['loc'])}: {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        )
        raise ValueError(f"{path}: {details}") from None


class _CompiledOverride:
    __slots__ = ("discount", "entry", "regex", "since", "until")

    def __init__(self, entry: PriceOverride) -> None:
        self.entry = entry
        self.regex = re.compile(entry.model_regex) if entry.model_regex is not None else None
        self.since = entry.effective_from.toordinal() if entry.effective_from else None
        self.until = entry.effective_until.toordinal() if entry.effective_until else None
        self.discount = entry.discount

    def matches(self, provider: str, model: str, day: int) -> bool:
        entry = self.entry
        if entry.provider is not None and entry.provider != provider:
            return False
        if entry.model is not None and entry.model != model:
            return False
        if self.regex is not None and not self.regex.search(model):
            return False
        if self.since is not None and day < self.since:
            return False
        return not (self.until is not None and day >= self.until)


# -- the book -----------------------------------------------------------------------------------------


class _Resolved:
    """genai-prices' resolved price for one cache key: tier starts and rates per tier (lazily)."""

    __slots__ = ("model_price", "rates", "starts")

    def __init__(self, model_price: Any, starts: list[int]) -> None:
        self.model_price = model_price
        self.starts = starts
        self.rates: dict[int, Rates] = {}


def _usage(
    input_tokens: int, cache_read: int = 0, cache_write: int = 0, output: int = 0, reasoning: int = 0
) -> Any:
    from genai_prices import Usage

    return Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        output_reasoning_tokens=reasoning,
    )


def _probe(model_price: Any, base_input: int) -> Rates:
    """Measure the affine rates of ``model_price`` around ``base_input`` input tokens (same tier)."""

    def total(**kwargs: int) -> Decimal:
        kwargs.setdefault("input_tokens", base_input)
        result: Decimal = model_price.calc_price(_usage(**kwargs))["total_price"]
        return result

    at_base = total()
    plus_one = total(input_tokens=base_input + 1)
    per_input = plus_one - at_base
    return Rates(
        input=float(per_input),
        cache_read=float(total(input_tokens=base_input + 1, cache_read=1) - plus_one + per_input),
        cache_write=float(total(input_tokens=base_input + 1, cache_write=1) - plus_one + per_input),
        output=float(total(output=1) - at_base),
        reasoning=float(total(output=1, reasoning=1) - at_base),
        request=float(at_base - per_input * base_input),
    )


def _tier_starts(model_price: Any) -> list[int]:
    from genai_prices.types import TieredPrices

    starts: set[int] = set()
    for value in vars(model_price).values():
        if isinstance(value, TieredPrices):
            starts.update(tier.start for tier in value.tiers)
    return sorted(starts)


class PriceBook:
    """Prices calls from overrides, then genai-prices; thread-safe, caches resolved rates.

    ``cost()`` returns USD or raises :class:`Unpriced`. Misses (unknown models) are cached too, so a
    flood of unknown names costs one genai-prices lookup per name and day (bounded by ``max_entries``).
    """

    def __init__(self, overrides: PriceOverrides | None = None, max_entries: int = 10_000) -> None:
        self._overrides = [_CompiledOverride(entry) for entry in (overrides.overrides if overrides else [])]
        self._override_rates = {id(o): o.entry.prices.rates() for o in self._overrides if o.entry.prices}
        self._lock = threading.Lock()
        self._cache: dict[tuple[object, ...], _Resolved] = {}
        # (provider id, model) -> (provider, model info, time-of-day constraints) or a miss reason
        self._models: dict[tuple[str | None, str], tuple[Any, Any, tuple[Any, ...]] | str] = {}
        self.max_entries = max_entries

    def cost(
        self,
        provider: str,
        model: str,
        time_ns: int,
        input_tokens: int,
        output_tokens: int,
        cache_read: int = 0,
        cache_write: int = 0,
        reasoning: int = 0,
        service_tier: str = "",
    ) -> float:
        """USD for one call; counts follow the conventions (cached within input, reasoning within output)."""
        if not model:
            raise Unpriced(_Reason.MISSING_MODEL)
        day = time_ns // _NS_PER_DAY + 719_163  # date.toordinal() of the UTC day
        discount = 0.0
        for override in self._overrides:
            if override.matches(provider, model, day):
                rates = self._override_rates.get(id(override))
                if rates is not None:
                    return rates.cost(input_tokens, output_tokens, cache_read, cache_write, reasoning)
                discount = override.discount or 0.0
                break
        rates = self.rates(provider, model, time_ns, input_tokens, service_tier)
        price = rates.cost(input_tokens, output_tokens, cache_read, cache_write, reasoning)
        return price * (1.0 - discount) if discount else price

    def rates(
        self, provider: str, model: str, time_ns: int, input_tokens: int, service_tier: str = ""
    ) -> Rates:
        """genai-prices rates for this call's tier; raises :class:`Unpriced`."""
        provider_id: str | None = PROVIDER_IDS.get(provider, provider) or None
        found = self._models.get((provider_id, model))
        if found is None:
            found = self._find_model(provider_id, model)
        if isinstance(found, str):
            raise Unpriced(found)
        provider_info, model_info, windows = found
        context = service_tier if service_tier and service_tier not in ("default", "auto") else ""
        day = time_ns // _NS_PER_DAY
        key: tuple[object, ...] = (provider_id, model, day, context)
        if windows:
            when = datetime.fromtimestamp(time_ns / 1e9, tz=UTC)
            key = (*key, tuple(window.active(when) for window in windows))
        resolved = self._cache.get(key)
        if resolved is None:
            resolved = self._resolve(key, provider_info, model_info, time_ns, context)
        tier = bisect.bisect_left(resolved.starts, input_tokens) if resolved.starts else 0
        rates = resolved.rates.get(tier)
        if rates is None:
            base = resolved.starts[tier - 1] + 1 if tier else 1
            rates = resolved.rates[tier] = _probe(resolved.model_price, base)
        return rates

    def _find_model(self, provider_id: str | None, model: str) -> tuple[Any, Any, tuple[Any, ...]] | str:
        from genai_prices import data_snapshot
        from genai_prices.types import ConditionalPrice, TimeOfDateConstraint

        snapshot = data_snapshot.get_snapshot()
        result: tuple[Any, Any, tuple[Any, ...]] | str
        try:
            provider_info, model_info = snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            known = provider_id is None or data_snapshot.find_provider_by_id(snapshot.providers, provider_id)
            result = _Reason.UNKNOWN_MODEL if known else _Reason.UNKNOWN_PROVIDER
        else:
            windows: list[Any] = []
            if isinstance(model_info.prices, list):
                windows.extend(
                    price.constraint
                    for price in model_info.prices
                    if isinstance(price, ConditionalPrice)
                    and isinstance(price.constraint, TimeOfDateConstraint)
                )
            for variant in model_info.price_variants or ():
                if isinstance(variant.constraint, TimeOfDateConstraint):
                    windows.append(variant.constraint)
            result = (provider_info, model_info, tuple(windows))
        with self._lock:
            if len(self._models) >= self.max_entries:
                self._models.clear()
            self._models[(provider_id, model)] = result
        return result

    def _resolve(
        self, key: tuple[object, ...], provider_info: Any, model_info: Any, time_ns: int, context: str
    ) -> _Resolved:
        when = datetime.fromtimestamp(time_ns / 1e9, tz=UTC)
        price_context = {"service_tier": context} if context else None
        # genai-prices ignores the context for a model borrowed from another provider; do the same.
        if price_context and not any(model_info is candidate for candidate in provider_info.models):
            price_context = None
        model_price = model_info.get_prices(when, price_context)
        resolved = _Resolved(model_price, _tier_starts(model_price))
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()  # bounded; a day's worth of keys is far below the limit
            self._cache[key] = resolved
        return resolved

    def cached_entries(self) -> int:
        """Resolved (provider, model, day, context) entries held."""
        return len(self._cache)
