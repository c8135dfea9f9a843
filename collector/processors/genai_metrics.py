"""``genai_metrics``: GenAI metrics derived from spans into the shared metric store.

In a traces pipeline, every GenAI span (current, legacy or OpenInference names, normalised by
:mod:`collector.genai.spans`) adds to:

- ``gen_ai.client.operation.duration`` (every client operation but agents, tools and workflows),
  ``gen_ai.client.token.usage`` by ``gen_ai.token.type`` and
  ``gen_ai.client.operation.time_to_first_chunk``: the upstream client metrics, unless the application
  sends them itself (see ``client_metrics``);
- ``otel_llm.requests``, ``otel_llm.errors`` (with ``error.type``), ``otel_llm.usage.missing``;
- ``gen_ai.invoke_agent.duration``, ``gen_ai.invoke_agent.inference_calls`` / ``.tool_calls``,
  ``gen_ai.execute_tool.duration`` by ``gen_ai.tool.name``, ``gen_ai.workflow.duration``;
- for retrieval spans, the document count and score distribution;
- ``otel_llm.spans.merged`` for nested duplicates of one call (rule in :mod:`collector.genai.calls`).

Every metric carries the same dimensions (one key per span): ``dimensions`` plus ``extra_dimensions``.

``client_metrics: auto`` (default) decides per ``service.name`` whether the application already sends
the upstream client metrics: put this processor in the metrics pipeline that receives the
application's metrics as well, and once a service's metrics include ``gen_ai.client.operation.duration``
or ``gen_ai.client.token.usage``, its spans stop feeding those (for ``app_metrics_ttl`` after the last
sighting). Our ``otel_llm.*`` metrics are always derived. ``always`` and ``never`` force the choice.

Pipeline data passes through unchanged. With ``cost`` in the same pipeline, either order works: the
first of the two marks duplicate spans (on the batch's shared GenAI view) and the second reads the marks.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Literal

from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, MetricsBatch, TraceBatch
from collector.durations import Duration
from collector.genai.calls import INFERENCE_OPERATIONS, AgentCallCounter, CallDeduplicator, mark_calls
from collector.genai.dimensions import DEFAULT_DIMENSIONS, DEFAULT_RESOURCE_KEYS, Dimensions, resource_key
from collector.genai.spans import GenAISpan, retrieval_documents
from collector.metrics import SCOPE_NAME, MetricStore, SeriesKey, shared_store
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m

__all__ = [
    "APP_METRICS_KEY",
    "FACTORY",
    "GenAIMetricsProcessor",
    "GenAIMetricsProcessorConfig",
]

_Op = attrs.GenAiOperationNameValues
#: ``host.shared`` key of the services seen sending the upstream client metrics themselves.
APP_METRICS_KEY = "collector.genai.app_metrics"
_UPSTREAM_CLIENT_METRICS = frozenset(
    {
        m.GEN_AI_CLIENT_OPERATION_DURATION,
        m.GEN_AI_CLIENT_TOKEN_USAGE,
        m.GEN_AI_CLIENT_INFERENCE_DURATION,
        m.GEN_AI_CLIENT_INFERENCE_USAGE_INPUT_TOKENS,
    }
)
_NOT_CLIENT_DURATION = frozenset({_Op.INVOKE_AGENT, _Op.EXECUTE_TOOL, _Op.INVOKE_WORKFLOW})
_NO_TOKENS = frozenset({_Op.INVOKE_AGENT, _Op.INVOKE_WORKFLOW, _Op.FETCH_RESPONSE})


class GenAIMetricsProcessorConfig(ComponentConfig):
    """``processors::genai_metrics``."""

    dimensions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DIMENSIONS),
        description="Attributes every derived metric carries; well-known GenAI names read the normalised value.",
    )
    extra_dimensions: list[str] = Field(
        default_factory=list,
        description="More dimensions, from span attributes, else resource attributes (e.g. `user`, `feature`).",
    )
    resource_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RESOURCE_KEYS),
        min_length=1,
        description="Resource attributes that identify a series' resource; others are dropped from it.",
    )
    cardinality_limit: int = Field(
        2000, ge=1, description="Series per metric; new series past it fold into `otel.metric.overflow=true`."
    )
    series_expiry: Duration = Field(
        600.0,
        description="Drop a series after this long without a point (0: never). A returning series restarts.",
    )
    client_metrics: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Derive the upstream gen_ai.client.* metrics: `auto` unless the service sends them itself.",
    )
    app_metrics_ttl: Duration = Field(
        600.0, gt=0, description="`auto`: how long one sighting of a service's own client metrics counts."
    )
    merge_duplicates: bool = Field(True, description="Count nested spans of the same call once.")
    merge_window: Duration = Field(600.0, gt=0, description="How long a call is remembered for merging.")
    merge_cache_size: int = Field(100_000, ge=1, description="Calls remembered for merging, per map.")
    agent_metrics: bool = Field(True, description="Count inference and tool calls per agent invocation.")

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        seen: set[str] = set()
        for index, name in enumerate([*self.dimensions, *self.extra_dimensions]):
            where = (
                f"dimensions::{index}"
                if index < len(self.dimensions)
                else f"extra_dimensions::{index - len(self.dimensions)}"
            )
            if not name:
                found.append((where, "expected an attribute name, got an empty string"))
            elif name in seen:
                found.append((where, f"{name!r} is listed twice"))
            seen.add(name)
        return found


class AppMetricsSeen:
    """Services seen sending the upstream client metrics, with the time of the last sighting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}

    def note(self, service: str, now_ns: int) -> None:
        with self._lock:
            self._seen[service] = now_ns

    def sends(self, service: str, now_ns: int, ttl_ns: int) -> bool:
        last = self._seen.get(service)
        return last is not None and now_ns - last < ttl_ns


class GenAIMetricsProcessor:
    """Derives GenAI metrics from trace batches; notes applications' own client metrics in metrics batches.

    Thread-safe: ``process`` may run on several receiver threads at once; the store, the deduplicator
    and the agent counter each lock briefly.
    """

    def __init__(self, config: GenAIMetricsProcessorConfig, settings: CreateSettings) -> None:
        self.config = config
        self.settings = settings
        self.dimensions = Dimensions([*config.dimensions, *config.extra_dimensions])
        self.calls = CallDeduplicator(config.merge_cache_size, config.merge_window)
        self.agents = AgentCallCounter(window_s=config.merge_window)
        self.store: MetricStore | None = None
        self.app_metrics: AppMetricsSeen = AppMetricsSeen()
        self._ttl_ns = int(config.app_metrics_ttl * 1e9)

    def start(self, host: Host) -> None:
        store = self.store = shared_store(host)
        self.app_metrics = host.get_shared(APP_METRICS_KEY, AppMetricsSeen)
        names = self.dimensions.names
        limits: dict[str, Any] = {
            "cardinality_limit": self.config.cardinality_limit,
            "expiry_s": self.config.series_expiry,
        }
        self._duration = store.histogram(m.GEN_AI_CLIENT_OPERATION_DURATION, names, **limits)
        self._tokens = store.histogram(
            m.GEN_AI_CLIENT_TOKEN_USAGE, (*names, attrs.GEN_AI_TOKEN_TYPE), **limits
        )
        self._ttfc = store.histogram(m.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, names, **limits)
        self._requests = store.counter(m.OTEL_LLM_REQUESTS, names, **limits)
        self._errors = store.counter(m.OTEL_LLM_ERRORS, names, **limits)
        self._usage_missing = store.counter(m.OTEL_LLM_USAGE_MISSING, names, **limits)
        self._merged = store.counter(m.OTEL_LLM_SPANS_MERGED, (*names,), **limits)
        self._agent = store.histogram(
            m.GEN_AI_INVOKE_AGENT_DURATION, (*names, attrs.GEN_AI_AGENT_NAME), **limits
        )
        self._agent_inference = store.histogram(
            m.GEN_AI_INVOKE_AGENT_INFERENCE_CALLS, (*names, attrs.GEN_AI_AGENT_NAME), **limits
        )
        self._agent_tools = store.histogram(
            m.GEN_AI_INVOKE_AGENT_TOOL_CALLS, (*names, attrs.GEN_AI_AGENT_NAME), **limits
        )
        self._tool = store.histogram(
            m.GEN_AI_EXECUTE_TOOL_DURATION, (*names, attrs.GEN_AI_TOOL_NAME, attrs.GEN_AI_TOOL_TYPE), **limits
        )
        self._workflow = store.histogram(
            m.GEN_AI_WORKFLOW_DURATION, (*names, attrs.GEN_AI_WORKFLOW_NAME), **limits
        )
        self._documents = store.histogram(m.OTEL_LLM_RETRIEVAL_DOCUMENTS, names, **limits)
        self._scores = store.histogram(m.OTEL_LLM_RETRIEVAL_SCORE, names, **limits)

    def shutdown(self, timeout_s: float) -> None:
        """Nothing to flush: the store outlives the processor and exporters read it."""

    def process(self, batch: Batch) -> Batch | None:
        if isinstance(batch, TraceBatch):
            spans = batch.genai_spans()
            if spans and self.store is not None:
                self.record(spans, time.time_ns())
        elif isinstance(batch, MetricsBatch) and self.config.client_metrics == "auto":
            self._note_app_metrics(batch)
        return batch

    def _note_app_metrics(self, batch: MetricsBatch) -> None:
        now = time.time_ns()
        for rm in batch.request.resource_metrics:
            # Our own derived metrics (scope SCOPE_NAME) must not count as the application's.
            if any(
                metric.name in _UPSTREAM_CLIENT_METRICS
                for sm in rm.scope_metrics
                if sm.scope.name != SCOPE_NAME
                for metric in sm.metrics
            ):
                service = next(
                    (kv.value.string_value for kv in rm.resource.attributes if kv.key == "service.name"),
                    "unknown_service",
                )
                self.app_metrics.note(service or "unknown_service", now)

    def record(self, spans: list[GenAISpan], now_ns: int) -> None:
        """Add the metrics of ``spans`` to the store (public for benchmarks and tests)."""
        assert self.store is not None
        # Marks only spans no earlier processor (cost) marked; merged spans are counted below.
        mark_calls(spans, now_ns, self.calls, self.config.merge_duplicates)
        store = self.store
        keys = self.config.resource_keys
        dims_of = self.dimensions.values
        mode = self.config.client_metrics
        app_metrics = self.app_metrics
        ttl = self._ttl_ns

        duration: list[tuple[SeriesKey, float]] = []
        tokens: list[tuple[SeriesKey, float]] = []
        ttfc: list[tuple[SeriesKey, float]] = []
        requests: dict[SeriesKey, float] = defaultdict(float)
        errors: dict[SeriesKey, float] = defaultdict(float)
        missing: dict[SeriesKey, float] = defaultdict(float)
        merged_counts: dict[SeriesKey, float] = defaultdict(float)
        agents: list[GenAISpan] = []
        for_agents: list[GenAISpan] = []
        tools: list[tuple[SeriesKey, float]] = []
        workflows: list[tuple[SeriesKey, float]] = []
        documents: list[tuple[SeriesKey, float]] = []
        scores: list[tuple[SeriesKey, float]] = []
        resources: dict[int, tuple[str, ...]] = {}
        skip_client: dict[str, bool] = {}
        # Spans of one batch share few series; their token keys are built once per series.
        token_key_cache: dict[SeriesKey, tuple[SeriesKey, SeriesKey]] = {}

        for span in spans:
            operation = span.operation
            if not operation:
                continue
            rid = id(span.resource_attributes)
            rkey = resources.get(rid)
            if rkey is None:
                rkey, exported = resource_key(span, keys)
                store.register_resource(rkey, exported)
                resources[rid] = rkey
            dims = dims_of(span)
            key = (rkey, dims)
            if span.count_call is False:
                merged_counts[key] += 1
            if mode == "always":
                client = True
            elif mode == "never":
                client = False
            else:
                service = span.service_name
                skip = skip_client.get(service)
                if skip is None:
                    skip = skip_client[service] = app_metrics.sends(service, now_ns, ttl)
                client = not skip
            if span.count_call:
                if operation == _Op.INVOKE_AGENT:
                    agents.append(span)
                elif operation == _Op.EXECUTE_TOOL:
                    tools.append(((rkey, (*dims, span.tool_name, span.tool_type)), span.duration_s))
                    for_agents.append(span)
                elif operation == _Op.INVOKE_WORKFLOW:
                    name = span.values.get(attrs.GEN_AI_WORKFLOW_NAME)
                    workflow = name.string_value if name is not None else ""
                    workflows.append(((rkey, (*dims, workflow)), span.duration_s))
                else:
                    requests[key] += 1
                    if span.is_error:
                        errors[key] += 1
                    if client:
                        duration.append((key, span.duration_s))
                        if span.time_to_first_chunk_s is not None:
                            ttfc.append((key, span.time_to_first_chunk_s))
                    if operation in INFERENCE_OPERATIONS:
                        for_agents.append(span)
                        if not span.has_usage and not span.is_error:
                            missing[key] += 1
                    elif operation == _Op.RETRIEVAL:
                        count, found = retrieval_documents(span)
                        if count is not None:
                            documents.append((key, float(count)))
                            scores.extend((key, score) for score in found)
            if span.count_usage and client and operation not in _NO_TOKENS:
                token_keys = token_key_cache.get(key)
                if token_keys is None:
                    token_keys = token_key_cache[key] = ((rkey, (*dims, "input")), (rkey, (*dims, "output")))
                if span.input_tokens is not None:
                    tokens.append((token_keys[0], float(span.input_tokens)))
                if span.output_tokens is not None:
                    tokens.append((token_keys[1], float(span.output_tokens)))

        if self.config.agent_metrics and (for_agents or agents):
            if for_agents:
                self.agents.note(for_agents, now_ns)
            agent_rows: list[tuple[SeriesKey, float]] = []
            inference_rows: list[tuple[SeriesKey, float]] = []
            tool_rows: list[tuple[SeriesKey, float]] = []
            # Inner agents end first; claiming shortest first lets them take their own calls.
            for span in sorted(agents, key=lambda s: s.duration_s):
                akey = (resources[id(span.resource_attributes)], (*dims_of(span), span.agent_name))
                agent_rows.append((akey, span.duration_s))
                inference, tool_calls = self.agents.claim(span)
                inference_rows.append((akey, float(inference)))
                tool_rows.append((akey, float(tool_calls)))
            self._agent.record_many(agent_rows, now_ns)
            self._agent_inference.record_many(inference_rows, now_ns)
            self._agent_tools.record_many(tool_rows, now_ns)
        elif agents:
            self._agent.record_many(
                (
                    ((resources[id(s.resource_attributes)], (*dims_of(s), s.agent_name)), s.duration_s)
                    for s in agents
                ),
                now_ns,
            )
        if duration:
            self._duration.record_many(duration, now_ns)
        if tokens:
            self._tokens.record_many(tokens, now_ns)
        if ttfc:
            self._ttfc.record_many(ttfc, now_ns)
        if requests:
            self._requests.add_many(requests.items(), now_ns)
        if errors:
            self._errors.add_many(errors.items(), now_ns)
        if missing:
            self._usage_missing.add_many(missing.items(), now_ns)
        if merged_counts:
            self._merged.add_many(merged_counts.items(), now_ns)
        if tools:
            self._tool.record_many(tools, now_ns)
        if workflows:
            self._workflow.record_many(workflows, now_ns)
        if documents:
            self._documents.record_many(documents, now_ns)
        if scores:
            self._scores.record_many(scores, now_ns)


def _create(config: GenAIMetricsProcessorConfig, settings: CreateSettings) -> GenAIMetricsProcessor:
    return GenAIMetricsProcessor(config, settings)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="genai_metrics",
    config_type=GenAIMetricsProcessorConfig,
    create=_create,
    signals=frozenset({Signal.TRACES, Signal.METRICS}),
    description="GenAI request, token, latency, agent, tool and retrieval metrics derived from spans.",
)
