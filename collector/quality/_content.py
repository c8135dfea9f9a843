"""Captured content of a GenAI span, read once into plain text for the evaluators.

Content capture is opt-in (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``, ``gen_ai.retrieval.documents``), sent either as structured values or,
by languages without structured span attributes, as JSON strings. Both forms are accepted; a value
that does not parse is treated as absent, never raised.

Older senders are read too when the current attributes are absent: OpenInference's flattened
``llm.input_messages.<i>.message.role/content`` and ``llm.output_messages.<i>...``, OpenLLMetry's
flattened ``gen_ai.prompt.<i>.role/content`` and ``gen_ai.completion.<i>.content/finish_reason``, and
the pre-1.28 span events ``gen_ai.content.prompt`` / ``gen_ai.content.completion`` (JSON lists of
``{role, content}``).

Retrieved context comes from three places: tool responses and ``tool`` messages in the input (the
usual RAG loop), documents of retrieval spans of the same trace (collected by the caller and passed
in), and documents that carry their text on the span itself (``content``/``text`` keys, or
OpenInference's ``retrieval.documents.<i>.document.content``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from collector.genai.spans import GenAISpan
from otel_llm.conventions import attributes as attrs

__all__ = ["RESPONSE_OPERATIONS", "SpanContent", "document_texts", "read_content"]

#: Operations whose spans carry an answer worth evaluating (empty: unknown operation, evaluated if content).
RESPONSE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "invoke_agent", ""})

_OI_RETRIEVAL_PREFIX = "retrieval.documents."
_OI_INPUT_PREFIX = "llm.input_messages."
_OI_OUTPUT_PREFIX = "llm.output_messages."
# OpenLLMetry (Traceloop) flattened content; the attribute names are the removed gen_ai.prompt/.completion.
_LEGACY_PROMPT_PREFIX = attrs.GEN_AI_PROMPT + "."
_LEGACY_COMPLETION_PREFIX = attrs.GEN_AI_COMPLETION + "."
_LEGACY_PROMPT_EVENT = "gen_ai.content.prompt"
_LEGACY_COMPLETION_EVENT = "gen_ai.content.completion"
_OI_DOCUMENT_CONTENT = "document.content"
# Keys under which retrieval documents and memory records carry their text in the field.
_DOC_TEXT_KEYS = ("content", "text", "page_content", "document")


@dataclass(slots=True)
class SpanContent:
    """Text views of one span's captured content; empty strings when not captured."""

    system: str = ""
    #: Text of the last user message: the question the answer should address.
    question: str = ""
    #: Text parts of every input message, in order, joined by blank lines.
    input_text: str = ""
    #: Text parts of every output message (all choices), joined by blank lines.
    answer: str = ""
    #: Finish reasons from the output messages, else from ``gen_ai.response.finish_reasons``.
    finish_reasons: tuple[str, ...] = ()
    #: Requested output type (``json``, ``text``...), legacy values mapped to current ones.
    output_type: str = ""
    #: Retrieved context: tool responses in the input and documents with text.
    context: list[str] = field(default_factory=list)
    #: True when the span carried input or output messages at all.
    has_input: bool = False
    has_output: bool = False

    @property
    def has_content(self) -> bool:
        """True when there is an answer to evaluate."""
        return self.has_output


def _decode(value: object) -> object:
    """A structured value, or the JSON a string holds; ``None`` for unparseable strings."""
    if isinstance(value, str):
        text = value.strip()
        if not text or text[0] not in "[{":
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None
    return value


def _text_of(value: object) -> str:
    """Text of a tool response or document body: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _messages(value: object) -> list[dict[str, object]]:
    decoded = _decode(value)
    if isinstance(decoded, dict):
        decoded = [decoded]
    if not isinstance(decoded, list):
        return []
    return [m for m in decoded if isinstance(m, dict)]


def _parts_text(message: dict[str, object], kinds: tuple[str, ...] = ("text",)) -> list[str]:
    parts = message.get("parts")
    texts: list[str] = []
    if isinstance(parts, list):
        for part in parts:
            if isinstance(part, dict) and part.get("type") in kinds:
                content = part.get("content")
                if isinstance(content, str):
                    texts.append(content)
    # Older and non-standard senders put a plain ``content`` string on the message.
    content = message.get("content")
    if not texts and isinstance(content, str):
        texts.append(content)
    return texts


def _tool_responses(message: dict[str, object]) -> list[str]:
    out: list[str] = []
    parts = message.get("parts")
    if isinstance(parts, list):
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "tool_call_response":
                text = _text_of(part.get("response"))
                if text:
                    out.append(text)
    if not out and message.get("role") == "tool":
        out.extend(t for t in _parts_text(message) if t)
    return out


def document_texts(span: GenAISpan) -> list[str]:
    """Texts of the retrieval documents a span carries (only documents that include their text)."""
    texts: list[str] = []
    decoded = _decode(span.attribute(attrs.GEN_AI_RETRIEVAL_DOCUMENTS))
    if isinstance(decoded, list):
        for doc in decoded:
            if isinstance(doc, dict):
                for key in _DOC_TEXT_KEYS:
                    text = doc.get(key)
                    if isinstance(text, str) and text:
                        texts.append(text)
                        break
            elif isinstance(doc, str) and doc:
                texts.append(doc)
    for key, value in span.attributes.items():
        if key.startswith(_OI_RETRIEVAL_PREFIX) and key.endswith(_OI_DOCUMENT_CONTENT) and value.string_value:
            texts.append(value.string_value)
    return texts


def _flattened(span: GenAISpan, prefix: str, role_key: str, content_key: str) -> list[dict[str, object]]:
    """Messages from ``<prefix><i>.<key>`` attributes, in index order; other keys under the prefix ignored."""
    found: dict[int, dict[str, object]] = {}
    for key, value in span.attributes.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if not index.isdigit():
            continue  # gen_ai.prompt.name / gen_ai.prompt.version share the prefix
        text = value.string_value
        if rest == role_key:
            found.setdefault(int(index), {})["role"] = text
        elif rest == content_key:
            found.setdefault(int(index), {})["content"] = text
        elif rest == "finish_reason":
            found.setdefault(int(index), {})["finish_reason"] = text
    return [found[i] for i in sorted(found)]


def _event_messages(span: GenAISpan, event_name: str, key: str) -> list[dict[str, object]]:
    for event in span.span.events:
        if event.name == event_name:
            for kv in event.attributes:
                if kv.key == key:
                    return _messages(kv.value.string_value)
    return []


def _legacy_inputs(span: GenAISpan) -> list[dict[str, object]]:
    return (
        _flattened(span, _OI_INPUT_PREFIX, "message.role", "message.content")
        or _flattened(span, _LEGACY_PROMPT_PREFIX, "role", "content")
        or _event_messages(span, _LEGACY_PROMPT_EVENT, attrs.GEN_AI_PROMPT)
    )


def _legacy_outputs(span: GenAISpan) -> list[dict[str, object]]:
    return (
        _flattened(span, _OI_OUTPUT_PREFIX, "message.role", "message.content")
        or _flattened(span, _LEGACY_COMPLETION_PREFIX, "role", "content")
        or _event_messages(span, _LEGACY_COMPLETION_EVENT, attrs.GEN_AI_COMPLETION)
    )


_FLAT_PREFIXES = (_OI_INPUT_PREFIX, _OI_OUTPUT_PREFIX, _LEGACY_PROMPT_PREFIX, _LEGACY_COMPLETION_PREFIX)


def _may_have_legacy_content(span: GenAISpan) -> bool:
    """One cheap pass, so spans without any content (the common case) skip the legacy readers."""
    if span.span.events:
        return True
    return any(key.startswith(_FLAT_PREFIXES) for key in span.attributes)


def read_content(span: GenAISpan, trace_context: list[str] | None = None) -> SpanContent:
    """The span's content as text; ``trace_context`` adds documents from other spans of its trace."""
    content = SpanContent()
    inputs = _messages(span.attribute(attrs.GEN_AI_INPUT_MESSAGES))
    outputs = _messages(span.attribute(attrs.GEN_AI_OUTPUT_MESSAGES))
    if (not inputs or not outputs) and _may_have_legacy_content(span):
        inputs = inputs or _legacy_inputs(span)
        outputs = outputs or _legacy_outputs(span)
    content.has_input = bool(inputs)
    content.has_output = bool(outputs)
    system = _messages(span.attribute(attrs.GEN_AI_SYSTEM_INSTRUCTIONS))
    system_texts: list[str] = []
    for part in system:
        # System instructions are an array of parts, not of messages.
        if part.get("type") == "text" and isinstance(part.get("content"), str):
            system_texts.append(str(part["content"]))
    raw_system = span.attribute(attrs.GEN_AI_SYSTEM_INSTRUCTIONS)
    if not system_texts and isinstance(raw_system, str) and _decode(raw_system) is None:
        system_texts.append(raw_system)
    input_texts: list[str] = []
    for message in inputs:
        role = message.get("role")
        texts = _parts_text(message)
        if role == "system":
            system_texts.extend(texts)
            continue
        if role == "user" and texts:
            content.question = "\n\n".join(texts)
        content.context.extend(_tool_responses(message))
        if role != "tool":
            input_texts.extend(texts)
    content.system = "\n\n".join(system_texts)
    content.input_text = "\n\n".join(input_texts)
    answers: list[str] = []
    reasons: list[str] = []
    for message in outputs:
        answers.extend(_parts_text(message))
        reason = message.get("finish_reason")
        if isinstance(reason, str) and reason:
            reasons.append(reason)
    content.answer = "\n\n".join(answers)
    if not reasons:
        listed = span.attribute(attrs.GEN_AI_RESPONSE_FINISH_REASONS)
        if isinstance(listed, list):
            reasons = [str(r) for r in listed if r]
        elif isinstance(listed, str) and listed:
            reasons = [listed]
    content.finish_reasons = tuple(reasons)
    output_type = span.attribute(attrs.GEN_AI_OUTPUT_TYPE)
    if output_type is None:
        output_type = span.attribute(attrs.GEN_AI_OPENAI_REQUEST_RESPONSE_FORMAT)
    if isinstance(output_type, str):
        content.output_type = attrs.OUTPUT_TYPE_VALUE_RENAMES.get(output_type, output_type)
    content.context.extend(document_texts(span))
    if trace_context:
        content.context.extend(trace_context)
    return content
