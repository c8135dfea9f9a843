"""One LLM call: its span, its parser and its end, which happens exactly once.

`Runtime.begin()` is called by the transport hook for every request; it returns None (cheaply) for
requests that are not LLM calls. `LLMCall.end()` finishes the span and records the metrics; it is
safe to call from any thread, any number of times (only the first call counts).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from array import array
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import Logger
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from otel_llm._config import NativeSpans, Settings
from otel_llm._instruments import Instruments
from otel_llm._providers import anthropic as anth
from otel_llm._providers import openai as oai
from otel_llm._providers._common import Result, error_code, loads, truncate
from otel_llm._providers.compat import ANTHROPIC_MESSAGES, Endpoint, recognise
from otel_llm.conventions import attributes as names
from otel_llm.conventions import events
from otel_llm.feedback import remember
from otel_llm.redaction import redact_content_attribute

logger = logging.getLogger("otel_llm")

# The SDKs that open their own call span around the HTTP request, by instrumentation scope name.
NATIVE_SCOPES = ("com.anthropic.sdk.python",)
NATIVE_SPAN_PREFIXES = ("anthropic.messages.",)

# A non-streamed body bigger than this is not kept for parsing (its usage is then missing).
MAX_BODY_BYTES = 16 * 1024 * 1024

# Gaps between chunks (for `gen_ai.client.operation.time_per_output_chunk`, when switched on) are kept
# during a stream and recorded at its end, or when this many have piled up: 8 KiB per stream at most.
CHUNK_GAPS_BUFFER = 1024


def is_native_call_span(span: Span) -> bool:
    """Whether `span` is an SDK's own call span (anthropic's `anthropic.messages.create`)."""
    scope = getattr(span, "instrumentation_scope", None)
    scope_name = getattr(scope, "name", None)
    if isinstance(scope_name, str) and scope_name.startswith(NATIVE_SCOPES):
        return True
    name = getattr(span, "name", None)
    return isinstance(name, str) and name.startswith(NATIVE_SPAN_PREFIXES)


class Runtime:
    """What `instrument()` set up: tracer, logger, instruments, settings. Shared by all calls."""

    def __init__(
        self, tracer: Tracer, event_logger: Logger, instruments: Instruments, settings: Settings
    ) -> None:
        self.tracer = tracer
        self.event_logger = event_logger
        self.instruments = instruments
        self.settings = settings

    def count_error(self, where: str, provider: str | None = None) -> None:
        """Counts and logs (debug) the exception being handled, one of ours; never raises."""
        try:
            logger.debug("otel-llm: error in %s", where, exc_info=True)
            exc = sys.exc_info()[1]
            labels = {names.ERROR_TYPE: type(exc).__qualname__ if exc is not None else "_OTHER"}
            if provider is not None:
                labels[names.GEN_AI_PROVIDER_NAME] = provider
            self.instruments.errors.add(1, labels)
        except Exception:  # pragma: no cover - the metrics API itself failed
            pass

    def begin(self, request: Any) -> LLMCall | None:
        """The call for `request` (an httpx or httpx2 Request), or None when it is not an LLM call."""
        if request.method != "POST":
            return None
        url = request.url
        path = url.path
        if not path.endswith(("completions", "embeddings", "responses", "messages", "/")):
            return None
        host = url.host
        port = url.port
        if port is None:
            port = 443 if url.scheme == "https" else 80
        endpoint = recognise(host, port, path, request.headers, self.settings.host_map)
        if endpoint is None:
            return None
        try:
            raw = request.content
        except Exception:  # a streamed or multipart body that was not read: no request details
            raw = b""
        body = loads(raw) if raw else None
        return LLMCall(self, endpoint, body, host, port, path)


class LLMCall:
    __slots__ = (
        "_body_chunks",
        "_body_size",
        "_lock",
        "api",
        "chunk_gaps",
        "chunks",
        "context",
        "ended",
        "endpoint",
        "first_chunk",
        "input_content",
        "last_chunk",
        "last_event",
        "metric_attrs",
        "native",
        "parser",
        "result",
        "rt",
        "span",
        "sse",
        "start",
        "status_code",
        "streaming",
    )

    def __init__(self, rt: Runtime, endpoint: Endpoint, body: Any, host: str, port: int, path: str) -> None:
        self.rt = rt
        self.endpoint = endpoint
        self.api = endpoint.api
        self.start = time.perf_counter()
        self.ended = False
        self._lock = threading.Lock()
        self.result = Result()
        self.parser: Any = None
        self.sse = False
        self.status_code = 0
        self.chunks = 0
        self.first_chunk = 0.0
        self.last_chunk = 0.0
        self.last_event = 0.0
        self.chunk_gaps: array[float] | None = None
        self._body_chunks: list[bytes] | None = None
        self._body_size = 0
        self.input_content: tuple[Any, Any] | None = None
        self.span: Span | None = None
        self.native: Span | None = None
        self.context: Context | None = None

        settings = rt.settings
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) and "/deployments/" in path:
            # Azure OpenAI names the deployment in the path; that is what the caller asked for.
            model = path.split("/deployments/", 1)[1].split("/", 1)[0] or None
        self.streaming = isinstance(body, dict) and body.get("stream") is True
        attrs: dict[str, Any] = {
            names.GEN_AI_OPERATION_NAME: endpoint.operation,
            names.GEN_AI_PROVIDER_NAME: endpoint.provider,
            names.SERVER_ADDRESS: host,
            names.SERVER_PORT: port,
        }
        if isinstance(model, str):
            attrs[names.GEN_AI_REQUEST_MODEL] = model
        self.metric_attrs = attrs

        parent = trace.get_current_span()
        if parent.is_recording() and is_native_call_span(parent):
            self.native = parent
            if settings.native_spans is not NativeSpans.DUPLICATE:
                return
        name = f"{endpoint.operation} {model}" if isinstance(model, str) else endpoint.operation
        # All request attributes at start (one attribute-set build in the SDK instead of two); they
        # are a few dict lookups, cheaper than asking the sampler first.
        start = dict(attrs)
        if self.api == ANTHROPIC_MESSAGES:
            anth.request_attributes(body, start)
        else:
            oai.request_attributes(self.api, body, start)
            if endpoint.provider in ("openai", "azure.ai.openai") and self.api in (oai.CHAT, oai.RESPONSES):
                start[names.OPENAI_API_TYPE] = self.api
        if self.streaming:
            start[names.GEN_AI_REQUEST_STREAM] = True
        span = rt.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=start)
        self.span = span
        self.context = trace.set_span_in_context(span)
        if span.is_recording() and settings.capture_content:
            if self.api == ANTHROPIC_MESSAGES:
                self.input_content = anth.input_content(body)
            else:
                self.input_content = oai.input_content(self.api, body)
            if settings.content_on_span:
                system, messages = self.input_content
                self._set_json(span, names.GEN_AI_SYSTEM_INSTRUCTIONS, system)
                self._set_json(span, names.GEN_AI_INPUT_MESSAGES, messages)

    @property
    def recording(self) -> bool:
        return self.span is not None or self.native is not None

    def _content(self, key: str, value: Any) -> str | None:
        """`value` as the compact JSON string to record: redacted (when `OTEL_LLM_REDACT` says so), then cut."""
        if not value:
            return None
        text = redact_content_attribute(
            key, json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        )
        return truncate(text, self.rt.settings.content_max_length) if isinstance(text, str) else None

    def _set_json(self, span: Span, key: str, value: Any) -> None:
        text = self._content(key, value)
        if text is not None:
            span.set_attribute(key, text)

    # --- response ---------------------------------------------------------------------------------

    def on_response(self, status_code: int, content_type: str) -> None:
        """Chooses how to read the body: SSE parser, or keep the bytes and decode them at the end."""
        self.status_code = status_code
        content = self.rt.settings.capture_content and self.span is not None
        if status_code < 400 and "text/event-stream" in content_type:
            self.sse = True
            r = self.result
            if self.api == ANTHROPIC_MESSAGES:
                self.parser = anth.MessagesStream(r, content)
            elif self.api == oai.RESPONSES:
                self.parser = oai.ResponsesStream(r, content)
            else:
                self.parser = oai.ChatStream(self.api, r, content)
            if self.rt.settings.time_per_output_chunk:
                self.chunk_gaps = array("d")
        else:
            self._body_chunks = []

    def note_events(self, now: float, events: int) -> None:
        """Called (only when time per output chunk is on) for each network read that completed `events`
        SSE events, at time `now`: every event after the first gets its gap to the one before, and
        events that arrived in the same read are 0 s apart."""
        gaps = self.chunk_gaps
        if not events or gaps is None:
            return
        if self.last_event:
            gaps.append(now - self.last_event)
        # else: the first event, which has no gap
        if events > 1:
            gaps.extend([0.0] * (events - 1))
        self.last_event = now
        if len(gaps) >= CHUNK_GAPS_BUFFER:
            # Record all but the newest: that one may be the `[DONE]` marker's, dropped at the end.
            self._record_gaps(gaps[:-1])
            del gaps[:-1]

    def _metric_attributes(self) -> dict[str, Any]:
        model = self.result.response_model
        if model is None:
            return self.metric_attrs
        return {**self.metric_attrs, names.GEN_AI_RESPONSE_MODEL: model}

    def _record_gaps(self, gaps: array[float], attrs: dict[str, Any] | None = None) -> None:
        record = self.rt.instruments.time_per_chunk.record
        attrs = self._metric_attributes() if attrs is None else attrs
        for gap in gaps:
            record(gap, attrs)

    def keep(self, data: bytes) -> None:
        """Keeps a piece of a non-SSE body (bounded)."""
        chunks = self._body_chunks
        if chunks is not None:
            self._body_size += len(data)
            if self._body_size <= MAX_BODY_BYTES:
                chunks.append(data)
            else:
                self._body_chunks = None

    # --- end --------------------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """The request itself raised (connection error, timeout...): end with the exception's class."""
        self.end(error_type=type(exc).__qualname__, exc=exc)

    def end(
        self,
        error_type: str | None = None,
        exc: BaseException | None = None,
        abandoned: bool = False,
    ) -> None:
        """Ends the call once: span attributes, span end, metrics. Never raises."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
        now = time.perf_counter()
        span = self.span
        try:
            self._finish(now, error_type, exc, abandoned)
        except Exception:
            self.rt.count_error("end", self.endpoint.provider)
        finally:
            if span is not None:
                span.end()

    def _finish(self, now: float, error_type: str | None, exc: BaseException | None, abandoned: bool) -> None:
        rt = self.rt
        r = self.result
        content = rt.settings.capture_content and self.span is not None
        body = b""
        if self.parser is not None:
            self.parser.finish()
            self.chunks = self.parser.scanner.events - (1 if getattr(self.parser, "done_seen", False) else 0)
        elif self._body_chunks:
            body = b"".join(self._body_chunks)
            if self.status_code < 400:
                obj = loads(body)
                if self.api == ANTHROPIC_MESSAGES:
                    anth.apply_body(obj, r, content)
                else:
                    oai.apply_body(self.api, obj, r, content)
        if error_type is None:
            if self.status_code >= 400:
                error_type = error_code(body) or str(self.status_code)
            elif r.error_type is not None:
                error_type = r.error_type
        attrs = self._metric_attributes()

        target = self.span
        if target is None and rt.settings.native_spans is NativeSpans.COMPLETE:
            target = self.native
        if target is not None and target.is_recording():
            self._set_span(target, now, error_type, exc, abandoned, own=target is self.span)
        remember(self.span or self.native or trace.INVALID_SPAN, r.response_id)

        inst = rt.instruments
        if rt.settings.client_metrics:
            self._record_client_metrics(now, error_type, attrs)
        if r.input_tokens is None and r.output_tokens is None and error_type is None:
            inst.usage_missing.add(1, attrs)
        if rt.settings.content_in_event and self.span is not None:
            self._emit_event(attrs, error_type)

    def _record_client_metrics(self, now: float, error_type: str | None, attrs: dict[str, Any]) -> None:
        """The upstream gen_ai.client.* histograms (off with OTEL_LLM_CLIENT_METRICS=false)."""
        inst = self.rt.instruments
        r = self.result
        if error_type is not None:
            inst.duration.record(now - self.start, {**attrs, names.ERROR_TYPE: error_type})
        else:
            inst.duration.record(now - self.start, attrs)
        if r.input_tokens is not None:
            inst.token_usage.record(r.input_tokens, {**attrs, names.GEN_AI_TOKEN_TYPE: "input"})
        if r.output_tokens is not None:
            inst.token_usage.record(r.output_tokens, {**attrs, names.GEN_AI_TOKEN_TYPE: "output"})
        if self.sse and self.first_chunk:
            inst.ttfc.record(self.first_chunk - self.start, attrs)
        gaps = self.chunk_gaps
        if gaps:
            if getattr(self.parser, "done_seen", False):
                del gaps[-1]  # the `[DONE]` marker, the last event, is not a chunk of output
            self._record_gaps(gaps, attrs)
            del gaps[:]

    def _set_span(
        self,
        span: Span,
        now: float,
        error_type: str | None,
        exc: BaseException | None,
        abandoned: bool,
        own: bool,
    ) -> None:
        r = self.result
        out: dict[str, Any] = {}
        if r.finish_reasons:
            out[names.GEN_AI_RESPONSE_FINISH_REASONS] = r.finish_reasons
        if self.sse:
            out[names.OTEL_LLM_STREAM_CHUNK_COUNT] = self.chunks
            if self.last_chunk:
                out[names.OTEL_LLM_STREAM_TIME_TO_LAST_CHUNK] = self.last_chunk - self.start
        if abandoned:
            out[names.OTEL_LLM_STREAM_ABANDONED] = True
        if error_type is None and r.input_tokens is None and r.output_tokens is None:
            out[names.OTEL_LLM_USAGE_MISSING] = True
        if own:
            # The SDK's own span already has these (and its own error handling).
            if r.response_id is not None:
                out[names.GEN_AI_RESPONSE_ID] = r.response_id
            if r.response_model is not None:
                out[names.GEN_AI_RESPONSE_MODEL] = r.response_model
            for key, value in (
                (names.GEN_AI_USAGE_INPUT_TOKENS, r.input_tokens),
                (names.GEN_AI_USAGE_OUTPUT_TOKENS, r.output_tokens),
                (names.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, r.cache_read),
                (names.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, r.cache_write),
                (names.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, r.reasoning),
            ):
                if value is not None:
                    out[key] = value
            if r.extra:
                out.update(r.extra)
            if self.sse and self.first_chunk:
                out[names.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = self.first_chunk - self.start
            if error_type is not None:
                out[names.ERROR_TYPE] = error_type
                if exc is not None:
                    span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, error_type))
            if self.rt.settings.content_on_span and r.output_messages:
                self._set_json(span, names.GEN_AI_OUTPUT_MESSAGES, r.output_messages)
        span.set_attributes(out)

    def _emit_event(self, attrs: dict[str, Any], error_type: str | None) -> None:
        r = self.result
        event_attrs: dict[str, Any] = dict(attrs)
        if r.response_id is not None:
            event_attrs[names.GEN_AI_RESPONSE_ID] = r.response_id
        if r.finish_reasons:
            event_attrs[names.GEN_AI_RESPONSE_FINISH_REASONS] = r.finish_reasons
        if error_type is not None:
            event_attrs[names.ERROR_TYPE] = error_type
        system, messages = self.input_content or (None, None)
        for key, value in (
            (names.GEN_AI_SYSTEM_INSTRUCTIONS, system),
            (names.GEN_AI_INPUT_MESSAGES, messages),
            (names.GEN_AI_OUTPUT_MESSAGES, r.output_messages),
        ):
            text = self._content(key, value)
            if text is not None:
                event_attrs[key] = text
        context = trace.set_span_in_context(self.span) if self.span is not None else None
        self.rt.event_logger.emit(
            event_name=events.GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS,
            attributes=event_attrs,
            context=context,
        )
