"""Anthropic Messages API (`POST /v1/messages`): request, JSON response and SSE stream.

Anthropic's `input_tokens` leaves the cache out; the conventions want it in, so
`gen_ai.usage.input_tokens` = input_tokens + cache_read_input_tokens + cache_creation_input_tokens.
"""

from __future__ import annotations

from typing import Any

from otel_llm._providers._common import JSON, Result, SseScanner, as_int, get
from otel_llm.conventions import attributes as names

_FINISH_TO_SCHEMA = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_call",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def request_attributes(body: JSON, attrs: dict[str, Any]) -> None:
    if not isinstance(body, dict):
        return
    for key, name in (
        ("max_tokens", names.GEN_AI_REQUEST_MAX_TOKENS),
        ("temperature", names.GEN_AI_REQUEST_TEMPERATURE),
        ("top_p", names.GEN_AI_REQUEST_TOP_P),
        ("top_k", names.GEN_AI_REQUEST_TOP_K),
    ):
        value = body.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[name] = value
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attrs[names.GEN_AI_REQUEST_STOP_SEQUENCES] = stop
    effort = get(body, "output_config", "effort")
    if isinstance(effort, str):
        attrs[names.GEN_AI_REQUEST_REASONING_LEVEL] = effort
    fmt = get(body, "output_config", "format", "type") or get(body, "output_format", "type")
    if fmt == "json_schema":
        attrs[names.GEN_AI_OUTPUT_TYPE] = "json"


def apply_usage(usage: Any, r: Result) -> None:
    if not isinstance(usage, dict):
        return
    raw_input = as_int(usage.get("input_tokens"))
    read = as_int(usage.get("cache_read_input_tokens"))
    write = as_int(usage.get("cache_creation_input_tokens"))
    if raw_input is not None:
        r.input_tokens = raw_input + (read or 0) + (write or 0)
    if read is not None:
        r.cache_read = read
    if write is not None:
        r.cache_write = write
    out = as_int(usage.get("output_tokens"))
    if out is not None:
        r.output_tokens = out
    thinking = as_int(get(usage, "output_tokens_details", "thinking_tokens"))
    if thinking is not None:
        r.reasoning = thinking


def _message_fields(msg: dict[str, Any], r: Result) -> None:
    mid = msg.get("id")
    if isinstance(mid, str):
        r.response_id = mid
    model = msg.get("model")
    if isinstance(model, str):
        r.response_model = model


def apply_body(obj: JSON, r: Result, content: bool) -> None:
    if not isinstance(obj, dict):
        return
    _message_fields(obj, r)
    apply_usage(obj.get("usage"), r)
    reason = obj.get("stop_reason")
    if isinstance(reason, str):
        r.finish_reasons = [reason]
    if content:
        r.output_messages = [_output_message(obj.get("content"), reason)]
    r.terminal = True


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text", "")})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": block.get("thinking", "")})
        elif kind == "redacted_thinking":
            parts.append({"type": "reasoning", "content": ""})
        elif kind in ("tool_use", "server_tool_use"):
            part = {"type": "tool_call", "id": block.get("id"), "name": block.get("name")}
            if "input" in block:
                part["arguments"] = block["input"]
            parts.append(part)
        elif kind == "tool_result":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": block.get("tool_use_id"),
                    "response": block.get("content"),
                }
            )
        elif kind in ("image", "document"):
            source = block.get("source")
            if not isinstance(source, dict):
                source = {}
            modality = "image" if kind == "image" else "document"
            if source.get("type") == "base64":
                parts.append(
                    {
                        "type": "blob",
                        "modality": modality,
                        "mime_type": source.get("media_type"),
                        "content": source.get("data"),
                    }
                )
            elif source.get("type") == "url":
                parts.append({"type": "uri", "modality": modality, "uri": source.get("url")})
            else:
                parts.append({"type": kind})
        elif isinstance(kind, str):
            parts.append({"type": kind})
    return parts


def _output_message(content: Any, reason: Any) -> dict[str, Any]:
    finish = _FINISH_TO_SCHEMA.get(reason, reason) if isinstance(reason, str) else "error"
    return {"role": "assistant", "parts": _blocks(content), "finish_reason": finish}


def input_content(body: JSON) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    if not isinstance(body, dict):
        return None, None
    system = body.get("system")
    instructions = None
    if isinstance(system, str):
        instructions = [{"type": "text", "content": system}]
    elif isinstance(system, list):
        instructions = [p for p in _blocks(system) if p.get("type") == "text"]
    messages = [
        {"role": m.get("role"), "parts": _blocks(m.get("content"))}
        for m in body.get("messages") or ()
        if isinstance(m, dict)
    ]
    return instructions, messages


_MARKERS = (b"message_start", b"message_delta", b'"error"')


def _interesting(block: bytes) -> bool:
    return any(m in block for m in _MARKERS) or b"message_stop" in block


def _quick(event: bytes) -> bool:
    # The event's type is in its `event:` line, or first in its JSON: look at the head only.
    return _interesting(event[:48])


class MessagesStream:
    """Anthropic SSE: `message_start` has id, model and input usage; `message_delta` the stop reason and
    the final output usage; `message_stop` ends it. Content deltas are decoded only when captured."""

    __slots__ = ("_blocks", "_content", "_reason", "r", "scanner")

    def __init__(self, r: Result, content: bool) -> None:
        self.r = r
        self._content = content
        self._reason: str | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self.scanner = SseScanner(_interesting, self._on_event, content, _quick)

    def feed(self, data: bytes) -> None:
        self.scanner.feed(data)

    def finish(self) -> None:
        self.scanner.flush()
        if self._content and (self._blocks or self._reason):
            parts = []
            for i in sorted(self._blocks):
                block = self._blocks[i]
                text = "".join(block.pop("_text", []))
                if block.get("type") == "tool_use":
                    args = "".join(block.pop("_json", []))
                    from otel_llm._providers._common import loads

                    block["input"] = loads(args) if args else block.get("input")
                elif block.get("type") == "thinking":
                    block["thinking"] = text
                else:
                    block["text"] = text
                parts.append(block)
            self.r.output_messages = [_output_message(parts, self._reason)]

    def _on_event(self, obj: JSON) -> None:
        if obj is None:
            return
        kind = obj.get("type")
        r = self.r
        if kind == "message_start":
            msg = obj.get("message")
            if isinstance(msg, dict):
                _message_fields(msg, r)
                apply_usage(msg.get("usage"), r)
                # message_start's output_tokens is a placeholder; only message_delta's counts.
                r.output_tokens = None
        elif kind == "message_delta":
            reason = get(obj, "delta", "stop_reason")
            if isinstance(reason, str):
                self._reason = reason
                r.finish_reasons = [reason]
            apply_usage(obj.get("usage"), r)
        elif kind == "message_stop":
            r.terminal = True
        elif kind == "error":
            code = get(obj, "error", "type")
            r.error_type = code if isinstance(code, str) else "_OTHER"
        elif self._content:
            self._accumulate(kind, obj)

    def _accumulate(self, kind: Any, obj: dict[str, Any]) -> None:
        index = obj.get("index", 0)
        if kind == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, dict):
                self._blocks[index] = dict(block)
        elif kind == "content_block_delta":
            block = self._blocks.setdefault(index, {"type": "text"})
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                block.setdefault("_text", []).append(delta.get("text", ""))
            elif dtype == "thinking_delta":
                block.setdefault("_text", []).append(delta.get("thinking", ""))
            elif dtype == "input_json_delta":
                block.setdefault("_json", []).append(delta.get("partial_json", ""))
