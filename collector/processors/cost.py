"""``cost``: the price of every GenAI call, as a USD counter and optionally on the span.

Order of sources, per span:

1. provider-reported cost (``gen_ai.usage.cost.amount`` in ``gen_ai.usage.cost.currency``, USD when the
   currency is missing), source ``provider``;
2. the price override file (``price_overrides``), source ``local``;
3. ``genai-prices`` (offline, dated by the span's start time, service tier as price context, cached per
   model and day), source ``local``.

A model call that none of them can price is counted in ``otel_llm.spans.unpriced`` by provider, model
and reason (``unknown_model``, ``unknown_provider``, ``missing_model``, ``missing_usage``,
``unsupported_currency``) and never priced at zero. ``otel_llm.cost`` (USD) carries the same
dimensions as ``genai_metrics`` plus ``gen_ai.usage.cost.source``. Nested duplicates of one call are
priced once (the rule of :mod:`collector.genai.calls`). Agent and workflow spans are not priced: the
usage they carry is their children's.

With ``span_attributes: true`` the computed cost is added to spans that carry none
(``gen_ai.usage.cost.amount``, ``.currency=USD``, ``.source=local``) before they are forwarded.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, TraceBatch
from collector.durations import Duration
from collector.errors import ComponentError
from collector.genai.calls import INFERENCE_OPERATIONS, CallDeduplicator, mark_calls
from collector.genai.dimensions import DEFAULT_DIMENSIONS, DEFAULT_RESOURCE_KEYS, Dimensions, resource_key
from collector.genai.prices import PriceBook, Unpriced, load_overrides
from collector.genai.spans import GenAISpan
from collector.metrics import MetricStore, SeriesKey, shared_store
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

__all__ = ["FACTORY", "CostProcessor", "CostProcessorConfig"]

_Source = attrs.GenAiUsageCostSourceValues
_Reason = attrs.OtelLlmUnpricedReasonValues
_Op = attrs.GenAiOperationNameValues
_NOT_PRICED = frozenset({_Op.INVOKE_AGENT, _Op.INVOKE_WORKFLOW, _Op.FETCH_RESPONSE})


class CostProcessorConfig(ComponentConfig):
    """``processors::cost``."""

    price_overrides: str | None = Field(
        None, description="Path of a YAML price override file (custom models, discounts); read at start."
    )
    span_attributes: bool = Field(
        False, description="Add gen_ai.usage.cost.* (source `local`) to spans that carry no cost."
    )
    dimensions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DIMENSIONS),
        description="Dimensions of the cost counter; keep equal to genai_metrics' for joined queries.",
    )
    extra_dimensions: list[str] = Field(
        default_factory=list, description="More cost dimensions from span or resource attributes (`user`)."
    )
    resource_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RESOURCE_KEYS),
        min_length=1,
        description="Resource attributes that identify a series' resource.",
    )
    cardinality_limit: int = Field(2000, ge=1, description="Series per metric before overflow.")
    series_expiry: Duration = Field(
        600.0, description="Drop a series after this long without a point (0: never)."
    )
    merge_duplicates: bool = Field(True, description="Price nested spans of the same call once.")
    merge_window: Duration = Field(600.0, gt=0, description="How long a call is remembered for merging.")

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.price_overrides is not None:
            try:
                load_overrides(self.price_overrides)
            except ValueError as exc:
                found.append(("price_overrides", str(exc)))
        names = [*self.dimensions, *self.extra_dimensions]
        for index, name in enumerate(names):
            if name in names[:index]:
                found.append((f"dimensions::{index}", f"{name!r} is listed twice"))
        return found


class CostProcessor:
    """Prices GenAI spans; thread-safe (the price book and the store lock briefly)."""

    def __init__(self, config: CostProcessorConfig, settings: CreateSettings) -> None:
        self.config = config
        self.settings = settings
        self.dimensions = Dimensions([*config.dimensions, *config.extra_dimensions])
        self.calls = CallDeduplicator(window_s=config.merge_window)
        self.book = PriceBook()
        self.store: MetricStore | None = None

    def start(self, host: Host) -> None:
        if self.config.price_overrides is not None:
            try:
                self.book = PriceBook(load_overrides(self.config.price_overrides))
            except ValueError as exc:
                raise ComponentError(f"processors::{self.settings.id}: {exc}") from exc
        store = self.store = shared_store(host)
        limits: dict[str, Any] = {
            "cardinality_limit": self.config.cardinality_limit,
            "expiry_s": self.config.series_expiry,
        }
        self._cost = store.counter(
            m.OTEL_LLM_COST, (*self.dimensions.names, attrs.GEN_AI_USAGE_COST_SOURCE), **limits
        )
        self._unpriced = store.counter(
            m.OTEL_LLM_SPANS_UNPRICED,
            (attrs.GEN_AI_PROVIDER_NAME, attrs.GEN_AI_REQUEST_MODEL, attrs.OTEL_LLM_UNPRICED_REASON),
            **limits,
        )

    def shutdown(self, timeout_s: float) -> None:
        """Nothing to flush."""

    def process(self, batch: Batch) -> Batch | None:
        if isinstance(batch, TraceBatch) and self.store is not None:
            spans = batch.genai_spans()
            if spans:
                self.price(spans, time.time_ns())
        return batch

    def price_one(self, span: GenAISpan) -> tuple[float | None, str]:
        """(USD, source) of one span, or (None, unpriced reason); ``(None, "")`` when there is nothing to price."""
        if span.cost_amount is not None:
            currency = span.cost_currency.upper()
            if currency in ("", "USD"):
                return span.cost_amount, _Source.PROVIDER
            return None, _Reason.UNSUPPORTED_CURRENCY
        if not span.has_usage:
            # A failed call without usage was most likely not billed: nothing to price, nothing to report.
            if span.operation in INFERENCE_OPERATIONS and not span.is_error:
                return None, _Reason.MISSING_USAGE
            return None, ""
        try:
            cost = self._lookup(span, span.response_model or span.request_model)
        except Unpriced as first:
            if not span.response_model or not span.request_model or span.response_model == span.request_model:
                return None, first.reason
            try:
                cost = self._lookup(span, span.request_model)
            except Unpriced:
                return None, first.reason
        return cost, _Source.LOCAL

    def _lookup(self, span: GenAISpan, model: str) -> float:
        return self.book.cost(
            span.provider,
            model,
            span.span.start_time_unix_nano or span.span.end_time_unix_nano,
            span.input_tokens or 0,
            span.output_tokens or 0,
            span.cache_read_tokens or 0,
            span.cache_write_tokens or 0,
            span.reasoning_tokens or 0,
            span.service_tier,
        )

    def price(self, spans: list[GenAISpan], now_ns: int) -> None:
        """Price ``spans``, add to the counters and (optionally) to the spans."""
        assert self.store is not None
        mark_calls(spans, now_ns, self.calls, self.config.merge_duplicates)
        store = self.store
        keys = self.config.resource_keys
        annotate = self.config.span_attributes
        costs: dict[SeriesKey, float] = defaultdict(float)
        unpriced: dict[SeriesKey, float] = defaultdict(float)
        resources: dict[int, tuple[str, ...]] = {}
        for span in spans:
            if not span.operation or span.operation in _NOT_PRICED:
                continue
            if span.cost_usd is None:
                cost, source = self.price_one(span)
                if cost is not None:
                    span.cost_usd, span.cost_source = cost, source
                    if annotate and source == _Source.LOCAL:
                        _annotate(span, cost)
            else:
                cost, source = span.cost_usd, span.cost_source
            if not source or not span.count_usage:
                continue
            rid = id(span.resource_attributes)
            rkey = resources.get(rid)
            if rkey is None:
                rkey, exported = resource_key(span, keys)
                store.register_resource(rkey, exported)
                resources[rid] = rkey
            if cost is not None:
                costs[(rkey, (*self.dimensions.values(span), source))] += cost
            else:
                unpriced[(rkey, (span.provider, span.request_model or span.response_model, source))] += 1
        if costs:
            self._cost.add_many(costs.items(), now_ns)
        if unpriced:
            self._unpriced.add_many(unpriced.items(), now_ns)


def _annotate(span: GenAISpan, cost: float) -> None:
    """Add the local cost to the forwarded span and to the cached view of its attributes."""
    for key, value in (
        (attrs.GEN_AI_USAGE_COST_AMOUNT, AnyValue(double_value=cost)),
        (attrs.GEN_AI_USAGE_COST_CURRENCY, AnyValue(string_value="USD")),
        (attrs.GEN_AI_USAGE_COST_SOURCE, AnyValue(string_value=_Source.LOCAL)),
    ):
        span.span.attributes.append(KeyValue(key=key, value=value))
        span.attributes[key] = value
        span.values[key] = value


def _create(config: CostProcessorConfig, settings: CreateSettings) -> CostProcessor:
    return CostProcessor(config, settings)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="cost",
    config_type=CostProcessorConfig,
    create=_create,
    signals=frozenset({Signal.TRACES}),
    description="USD cost of GenAI calls from provider-reported cost, price overrides and genai-prices.",
)
