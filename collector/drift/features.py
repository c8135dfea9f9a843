"""What the drift processor reads from one GenAI span: prompt text and content-free statistics.

Content (``gen_ai.input.messages``, ``gen_ai.output.messages``) is opt-in in the instrumentations, so
text may be absent; everything else comes from attributes every instrumentation sets. Messages arrive
either as a JSON string (the form languages without structured attributes send) or as a structured
array value; both follow the conventions' input-messages schema (``[{role, parts: [{type, content}]}]``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from collector.genai.spans import GenAISpan, any_value
from otel_llm.conventions import attributes as attrs

__all__ = [
    "SIGNAL_KINDS",
    "Features",
    "Signal",
    "SignalKind",
    "drift_values",
    "extract_features",
    "last_message_text",
]


class SignalKind(StrEnum):
    """How a signal is tested: embeddings by MMD, numbers by KS, categories by chi-squared."""

    EMBEDDING = "embedding"
    NUMBER = "number"
    CATEGORY = "category"


class Signal(StrEnum):
    """The monitored distributions; the value is the ``otel_llm.drift.signal`` metric attribute."""

    PROMPT_EMBEDDING = "prompt_embedding"
    ANSWER_EMBEDDING = "answer_embedding"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    LATENCY = "latency"
    FINISH_REASON = "finish_reason"
    ERROR = "error"
    TOOL_CALL = "tool_call"


SIGNAL_KINDS: dict[Signal, SignalKind] = {
    Signal.PROMPT_EMBEDDING: SignalKind.EMBEDDING,
    Signal.ANSWER_EMBEDDING: SignalKind.EMBEDDING,
    Signal.INPUT_TOKENS: SignalKind.NUMBER,
    Signal.OUTPUT_TOKENS: SignalKind.NUMBER,
    Signal.LATENCY: SignalKind.NUMBER,
    Signal.FINISH_REASON: SignalKind.CATEGORY,
    Signal.ERROR: SignalKind.CATEGORY,
    Signal.TOOL_CALL: SignalKind.CATEGORY,
}

# Finish reasons that mean the model asked for a tool, as providers spell them.
_TOOL_FINISH = frozenset({"tool_call", "tool_calls", "tool_use", "function_call"})


@dataclass(frozen=True, slots=True)
class Features:
    """Per-span values; ``None`` where the span does not carry them (never guessed)."""

    prompt_text: str | None
    answer_text: str | None
    numbers: dict[Signal, float]
    categories: dict[Signal, str]


def _messages(value: object) -> list[object]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def _text_of(message: dict[object, object]) -> str:
    parts = message.get("parts")
    texts: list[str] = []
    if isinstance(parts, list):
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("content"), str):
                texts.append(str(part["content"]))
    elif isinstance(message.get("content"), str):
        # Older and non-conforming emitters put a plain `content` string on the message.
        texts.append(str(message["content"]))
    return "\n".join(texts)


def last_message_text(value: object, role: str | None) -> str | None:
    """Text of the last message with ``role`` (any role when ``None``) that has text; ``None`` if none."""
    for message in reversed(_messages(value)):
        if isinstance(message, dict) and (role is None or message.get("role") == role):
            text = _text_of(message)
            if text.strip():
                return text
    return None


def _tool_called(finish_reasons: Sequence[str], output: object) -> bool:
    if any(reason in _TOOL_FINISH for reason in finish_reasons):
        return True
    for message in _messages(output):
        if isinstance(message, dict) and isinstance(message.get("parts"), list):
            for part in message["parts"]:
                if isinstance(part, dict) and part.get("type") == "tool_call":
                    return True
    return False


_KEYS = frozenset(
    {attrs.GEN_AI_RESPONSE_FINISH_REASONS, attrs.GEN_AI_INPUT_MESSAGES, attrs.GEN_AI_OUTPUT_MESSAGES}
)


def drift_values(span: GenAISpan) -> dict[str, AnyValue]:
    """The attributes drift reads beyond the normalised fields (finish reasons, messages).

    Taken from the keys the extraction already picked (:attr:`GenAISpan.values`), so drift never builds
    the span's full attribute map. The values stay undecoded until needed.
    """
    values = span.values
    return {key: values[key] for key in _KEYS if key in values}


def extract_features(
    span: GenAISpan, *, want_prompt: bool, want_answer: bool, values: dict[str, AnyValue] | None = None
) -> Features:
    """Read the drift features of one span; decodes the message attributes only when asked to.

    ``values`` is :func:`drift_values` of the span when the caller already has it.
    """
    picked = drift_values(span) if values is None else values
    numbers: dict[Signal, float] = {Signal.LATENCY: span.duration_s}
    if span.input_tokens is not None:
        numbers[Signal.INPUT_TOKENS] = float(span.input_tokens)
    if span.output_tokens is not None:
        numbers[Signal.OUTPUT_TOKENS] = float(span.output_tokens)
    raw_reasons = _decoded(picked, attrs.GEN_AI_RESPONSE_FINISH_REASONS)
    reasons = [str(r) for r in raw_reasons] if isinstance(raw_reasons, list) else []
    if isinstance(raw_reasons, str) and raw_reasons:
        reasons = [raw_reasons]
    output = _decoded(picked, attrs.GEN_AI_OUTPUT_MESSAGES) if want_answer or not reasons else None
    if not reasons:
        for message in _messages(output):
            if isinstance(message, dict) and isinstance(message.get("finish_reason"), str):
                reasons.append(str(message["finish_reason"]))
    categories: dict[Signal, str] = {Signal.ERROR: span.error_type or ("error" if span.is_error else "none")}
    if reasons or _messages(output):
        categories[Signal.TOOL_CALL] = "yes" if _tool_called(reasons, output) else "no"
    if reasons:
        categories[Signal.FINISH_REASON] = reasons[0]
    prompt = last_message_text(_decoded(picked, attrs.GEN_AI_INPUT_MESSAGES), "user") if want_prompt else None
    answer = last_message_text(output, None) if want_answer else None
    return Features(prompt_text=prompt, answer_text=answer, numbers=numbers, categories=categories)


def _decoded(values: dict[str, AnyValue], key: str) -> object:
    value = values.get(key)
    return None if value is None else any_value(value)
