"""Settings read from the environment once, at `instrument()`."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from otel_llm import environment_variables as env
from otel_llm._providers.compat import parse_host_map

DEFAULT_CONTENT_MAX_LENGTH = 65536


class ContentMode(enum.Enum):
    NO_CONTENT = 0
    SPAN_ONLY = 1
    EVENT_ONLY = 2
    SPAN_AND_EVENT = 3


class NativeSpans(enum.Enum):
    COMPLETE = "complete"
    METRICS_ONLY = "metrics_only"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Settings:
    content_mode: ContentMode = ContentMode.NO_CONTENT
    # Whether to emit the gen_ai.client.inference.operation.details log event.
    emit_event: bool = False
    content_max_length: int = DEFAULT_CONTENT_MAX_LENGTH
    host_map: Mapping[str, str] = field(default_factory=dict)
    native_spans: NativeSpans = NativeSpans.COMPLETE
    # Whether the upstream gen_ai.client.* histograms are recorded in the application.
    client_metrics: bool = True
    # One of those histograms, so only ever on together with client_metrics (see __post_init__).
    time_per_output_chunk: bool = False
    # Derived from the fields above once, here, because every call reads them (plain attributes are
    # cheaper to read than properties on the per-call path).
    content_on_span: bool = field(init=False)
    content_in_event: bool = field(init=False)
    capture_content: bool = field(init=False)

    def __post_init__(self) -> None:
        on_span = self.content_mode in (ContentMode.SPAN_ONLY, ContentMode.SPAN_AND_EVENT)
        in_event = self.emit_event and self.content_mode in (
            ContentMode.EVENT_ONLY,
            ContentMode.SPAN_AND_EVENT,
        )
        object.__setattr__(self, "content_on_span", on_span)
        object.__setattr__(self, "content_in_event", in_event)
        object.__setattr__(self, "capture_content", on_span or in_event)
        object.__setattr__(self, "time_per_output_chunk", self.time_per_output_chunk and self.client_metrics)


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    e = os.environ if environ is None else environ
    opt_in = {p.strip() for p in e.get(env.OTEL_SEMCONV_STABILITY_OPT_IN, "").split(",")}
    mode = ContentMode.NO_CONTENT
    if "gen_ai_latest_experimental" in opt_in:
        raw = e.get(env.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, "").strip().upper()
        mode = ContentMode.__members__.get(raw, ContentMode.NO_CONTENT)
    emit = _flag(e.get(env.OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT))
    if emit is None:
        emit = mode in (ContentMode.EVENT_ONLY, ContentMode.SPAN_AND_EVENT)
    try:
        max_length = int(e.get(env.OTEL_LLM_CONTENT_MAX_LENGTH, ""))
    except ValueError:
        max_length = DEFAULT_CONTENT_MAX_LENGTH
    if max_length < 1:
        max_length = DEFAULT_CONTENT_MAX_LENGTH
    native_raw = e.get(env.OTEL_LLM_NATIVE_SDK_SPANS, "").strip().lower()
    native = {n.value: n for n in NativeSpans}.get(native_raw, NativeSpans.COMPLETE)
    return Settings(
        content_mode=mode,
        emit_event=emit,
        content_max_length=max_length,
        host_map=parse_host_map(e.get(env.OTEL_LLM_PROVIDER_HOSTS)),
        native_spans=native,
        client_metrics=_flag(e.get(env.OTEL_LLM_CLIENT_METRICS)) is not False,
        time_per_output_chunk=_flag(e.get(env.OTEL_LLM_TIME_PER_OUTPUT_CHUNK)) is True,
    )
