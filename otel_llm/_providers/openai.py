"""OpenAI-shaped APIs: chat completions, legacy completions, embeddings and the Responses API.

Bytes in, attributes out. Also used for Azure OpenAI and every OpenAI-compatible server.
"""

from __future__ import annotations

from typing import Any

from otel_llm._providers._common import JSON, Result, SseScanner, as_int, get
from otel_llm.conventions import attributes as names

CHAT = "chat_completions"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
RESPONSES = "responses"

_FINISH_TO_SCHEMA = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_call",
    "function_call": "tool_call",
}


def _number(attrs: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        attrs[key] = value


def _stop(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


# Chat, legacy completions and embeddings: request fields whose number goes straight into an attribute.
_NUMBER_FIELDS = {
    "max_tokens": names.GEN_AI_REQUEST_MAX_TOKENS,
    "seed": names.GEN_AI_REQUEST_SEED,
    "frequency_penalty": names.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": names.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "temperature": names.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": names.GEN_AI_REQUEST_TOP_P,
}
# ... and the fields that need more than that.
_OTHER_FIELDS = frozenset(
    {
        "max_completion_tokens",
        "n",
        "stop",
        "reasoning_effort",
        "response_format",
        "service_tier",
        "encoding_format",
        "dimensions",
    }
)


def request_attributes(api: str, body: JSON, attrs: dict[str, Any]) -> None:
    """Adds the recommended request attributes of `body` (already decoded) to `attrs`."""
    if not isinstance(body, dict):
        return
    if api == RESPONSES:
        _responses_request_attributes(body, attrs)
        return
    # Only the fields present are looked at: a request body usually has four to six of the dozen
    # that matter, and this runs on every call.
    keys = body.keys()
    for key in keys & _NUMBER_FIELDS.keys():
        _number(attrs, _NUMBER_FIELDS[key], body[key])
    if keys & _OTHER_FIELDS:
        _other_request_attributes(api, body, attrs)


def _other_request_attributes(api: str, body: dict[str, Any], attrs: dict[str, Any]) -> None:
    g = body.get
    _number(attrs, names.GEN_AI_REQUEST_MAX_TOKENS, g("max_completion_tokens"))
    n = g("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        attrs[names.GEN_AI_REQUEST_CHOICE_COUNT] = n
    stop = _stop(g("stop"))
    if stop is not None:
        attrs[names.GEN_AI_REQUEST_STOP_SEQUENCES] = stop
    effort = g("reasoning_effort")
    if isinstance(effort, str):
        attrs[names.GEN_AI_REQUEST_REASONING_LEVEL] = effort
    fmt = get(body, "response_format", "type")
    if isinstance(fmt, str):
        attrs[names.GEN_AI_OUTPUT_TYPE] = "text" if fmt == "text" else "json"
    _service_tier(body, attrs)
    if api == EMBEDDINGS:
        enc = g("encoding_format")
        if isinstance(enc, str):
            attrs[names.GEN_AI_REQUEST_ENCODING_FORMATS] = [enc]
        _number(attrs, names.GEN_AI_EMBEDDINGS_DIMENSION_COUNT, g("dimensions"))


def _responses_request_attributes(body: dict[str, Any], attrs: dict[str, Any]) -> None:
    g = body.get
    _number(attrs, names.GEN_AI_REQUEST_MAX_TOKENS, g("max_output_tokens"))
    effort = get(body, "reasoning", "effort")
    if isinstance(effort, str):
        attrs[names.GEN_AI_REQUEST_REASONING_LEVEL] = effort
    prev = g("previous_response_id")
    if isinstance(prev, str):
        attrs[names.GEN_AI_REQUEST_PREVIOUS_RESPONSE_ID] = prev
    conv = g("conversation")
    conv = conv.get("id") if isinstance(conv, dict) else conv
    if isinstance(conv, str):
        attrs[names.GEN_AI_CONVERSATION_ID] = conv
    _number(attrs, names.GEN_AI_REQUEST_TEMPERATURE, g("temperature"))
    _number(attrs, names.GEN_AI_REQUEST_TOP_P, g("top_p"))
    fmt = get(body, "text", "format", "type")
    if isinstance(fmt, str):
        attrs[names.GEN_AI_OUTPUT_TYPE] = "text" if fmt == "text" else "json"
    _service_tier(body, attrs)


def _service_tier(body: dict[str, Any], attrs: dict[str, Any]) -> None:
    tier = body.get("service_tier")
    if isinstance(tier, str) and tier != "auto":
        attrs[names.OPENAI_REQUEST_SERVICE_TIER] = tier


# --- usage and response fields -------------------------------------------------------------------


def apply_usage(api: str, usage: Any, r: Result) -> None:
    if not isinstance(usage, dict):
        return
    if api == RESPONSES:
        r.input_tokens = as_int(usage.get("input_tokens"))
        r.output_tokens = as_int(usage.get("output_tokens"))
        r.cache_read = as_int(get(usage, "input_tokens_details", "cached_tokens"))
        r.reasoning = as_int(get(usage, "output_tokens_details", "reasoning_tokens"))
        return
    r.input_tokens = as_int(usage.get("prompt_tokens"))
    if api != EMBEDDINGS:
        r.output_tokens = as_int(usage.get("completion_tokens"))
    cached = as_int(get(usage, "prompt_tokens_details", "cached_tokens"))
    if cached is None:
        # DeepSeek reports the cache hit beside the total instead.
        cached = as_int(usage.get("prompt_cache_hit_tokens"))
    r.cache_read = cached
    r.reasoning = as_int(get(usage, "completion_tokens_details", "reasoning_tokens"))


def _common_fields(obj: dict[str, Any], r: Result) -> None:
    rid = obj.get("id")
    if isinstance(rid, str) and r.response_id is None:
        r.response_id = rid
    model = obj.get("model")
    if isinstance(model, str):
        r.response_model = model
    r.set_extra(names.OPENAI_RESPONSE_SERVICE_TIER, _str(obj.get("service_tier")))
    r.set_extra(names.OPENAI_RESPONSE_SYSTEM_FINGERPRINT, _str(obj.get("system_fingerprint")))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def apply_body(api: str, obj: JSON, r: Result, content: bool) -> None:
    """Reads a non-streamed JSON response."""
    if not isinstance(obj, dict):
        return
    if api == RESPONSES:
        _apply_response_object(obj, r, content)
        return
    _common_fields(obj, r)
    apply_usage(api, obj.get("usage"), r)
    if api == EMBEDDINGS:
        first = get(obj, "data")
        vector = (
            first[0].get("embedding")
            if isinstance(first, list) and first and isinstance(first[0], dict)
            else None
        )
        if isinstance(vector, list):  # base64 vectors are left uncounted
            r.set_extra(names.GEN_AI_EMBEDDINGS_DIMENSION_COUNT, len(vector))
        r.terminal = True
        return
    choices = obj.get("choices")
    if isinstance(choices, list):
        reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
        r.finish_reasons = [x for x in reasons if isinstance(x, str)]
        if content:
            r.output_messages = [_choice_message(api, c) for c in choices if isinstance(c, dict)]
    r.terminal = True


def _apply_response_object(obj: dict[str, Any], r: Result, content: bool) -> None:
    _common_fields(obj, r)
    apply_usage(RESPONSES, obj.get("usage"), r)
    status = obj.get("status")
    output = obj.get("output")
    if status == "completed":
        has_call = isinstance(output, list) and any(
            isinstance(item, dict) and item.get("type") == "function_call" for item in output
        )
        r.finish_reasons = ["tool_calls" if has_call else "stop"]
    elif status == "incomplete":
        reason = get(obj, "incomplete_details", "reason")
        r.finish_reasons = [reason if isinstance(reason, str) else "incomplete"]
    elif status == "failed":
        r.finish_reasons = ["error"]
        code = get(obj, "error", "code")
        if isinstance(code, str):
            r.error_type = code
    if content and isinstance(output, list):
        r.output_messages = [_responses_output(output, r.finish_reasons)]


# --- content (only when capture is on) -------------------------------------------------------------


def _text_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, list):
        for item in content:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind in ("text", "input_text", "output_text") and isinstance(item.get("text"), str):
                parts.append({"type": "text", "content": item["text"]})
            elif kind == "refusal" and isinstance(item.get("refusal"), str):
                parts.append({"type": "text", "content": item["refusal"]})
            elif kind == "image_url":
                url = get(item, "image_url", "url")
                if isinstance(url, str):
                    parts.append({"type": "uri", "modality": "image", "uri": url})
            elif kind == "input_image" and isinstance(item.get("image_url"), str):
                parts.append({"type": "uri", "modality": "image", "uri": item["image_url"]})
            elif isinstance(kind, str):
                parts.append({"type": kind})
    return parts


def _tool_call_part(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call.get("function"), dict) else call
    part: dict[str, Any] = {"type": "tool_call", "name": get(fn, "name")}
    cid = call.get("id") or call.get("call_id")
    if cid is not None:
        part["id"] = cid
    args = get(fn, "arguments")
    if args is not None:
        part["arguments"] = _maybe_json(args)
    return part


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        from otel_llm._providers._common import loads

        decoded = loads(value)
        return value if decoded is None else decoded
    return value


def _choice_message(api: str, choice: dict[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]]
    if api == COMPLETIONS:
        parts = [{"type": "text", "content": choice.get("text") or ""}]
    else:
        msg = choice.get("message")
        if not isinstance(msg, dict):
            msg = {}
        parts = _text_parts(msg.get("content"))
        for call in msg.get("tool_calls") or ():
            if isinstance(call, dict):
                parts.append(_tool_call_part(call))
    reason = choice.get("finish_reason")
    return {
        "role": "assistant",
        "parts": parts,
        "finish_reason": _FINISH_TO_SCHEMA.get(reason, reason) if isinstance(reason, str) else "error",
    }


def _responses_output(output: list[Any], reasons: list[str] | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            parts.extend(_text_parts(item.get("content")))
        elif kind == "function_call":
            parts.append(_tool_call_part(item))
        elif kind == "reasoning":
            for s in item.get("summary") or ():
                if isinstance(s, dict) and isinstance(s.get("text"), str):
                    parts.append({"type": "reasoning", "content": s["text"]})
    reason = reasons[0] if reasons else "error"
    return {"role": "assistant", "parts": parts, "finish_reason": _FINISH_TO_SCHEMA.get(reason, reason)}


def input_content(api: str, body: JSON) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """(system instructions, input messages) of a request, in the upstream schema."""
    if not isinstance(body, dict):
        return None, None
    if api == COMPLETIONS:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return None, [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        if isinstance(prompt, list):
            return None, [{"role": "user", "parts": _text_parts(p)} for p in prompt]
        return None, None
    if api == EMBEDDINGS:
        return None, None
    if api == RESPONSES:
        system = None
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            system = [{"type": "text", "content": instructions}]
        items = body.get("input")
        if isinstance(items, str):
            return system, [{"role": "user", "parts": [{"type": "text", "content": items}]}]
        messages: list[dict[str, Any]] = []
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            kind = item.get("type", "message")
            if kind == "message":
                messages.append({"role": item.get("role", "user"), "parts": _text_parts(item.get("content"))})
            elif kind == "function_call":
                messages.append({"role": "assistant", "parts": [_tool_call_part(item)]})
            elif kind == "function_call_output":
                part = {
                    "type": "tool_call_response",
                    "id": item.get("call_id"),
                    "response": item.get("output"),
                }
                messages.append({"role": "tool", "parts": [part]})
        return system, messages
    out: list[dict[str, Any]] = []
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role == "tool":
            part = {
                "type": "tool_call_response",
                "id": msg.get("tool_call_id"),
                "response": msg.get("content"),
            }
            out.append({"role": "tool", "parts": [part]})
            continue
        parts = _text_parts(msg.get("content"))
        for call in msg.get("tool_calls") or ():
            if isinstance(call, dict):
                parts.append(_tool_call_part(call))
        entry: dict[str, Any] = {"role": "system" if role == "developer" else role, "parts": parts}
        if isinstance(msg.get("name"), str):
            entry["name"] = msg["name"]
        out.append(entry)
    return None, out


# --- streams --------------------------------------------------------------------------------------


def _chat_interesting(block: bytes) -> bool:
    # Decode only events that carry usage, a finish reason, an error or the end marker; every chunk
    # repeats id and model, and those come from the first event.
    if b'"usage":{' in block or b'"usage": {' in block or b"[DONE]" in block or b'"error"' in block:
        return True
    n = block.count(b'"finish_reason"')
    return n > block.count(b'"finish_reason":null') + block.count(b'"finish_reason": null')


_PLAIN_ENDINGS = (b'"finish_reason":null}],"usage":null}\n\n', b'"finish_reason":null}]}\n\n')


def _chat_quick(event: bytes) -> bool:
    # The common OpenAI content chunk, recognised by its last bytes alone.
    if event.endswith(_PLAIN_ENDINGS):
        return False
    # Otherwise: its finish_reason and usage sit at its end, so search from the end.
    i = event.rfind(b'"finish_reason"')
    if i >= 0:
        value = event[i + 16 : i + 18]
        if not (value[:1] == b"n" or value == b" n"):
            return True
    j = event.rfind(b'"usage"')
    if j >= 0 and b"{" in event[j + 8 : j + 10]:
        return True
    head = event[:24]
    return b"[DONE]" in head or b'"error"' in head


class ChatStream:
    """Chat and legacy completions SSE: id/model from the first event; usage/finish from the last ones."""

    __slots__ = ("_api", "_choices", "_content", "_first", "_reasons", "done_seen", "r", "scanner")

    def __init__(self, api: str, r: Result, content: bool) -> None:
        self._api = api
        self.r = r
        self._content = content
        self._first = True
        # The `[DONE]` marker is an SSE data event but no chunk of the model's output.
        self.done_seen = False
        self._reasons: dict[int, str] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self.scanner = SseScanner(self._interesting, self._on_event, content, self._quick)

    def _interesting(self, block: bytes) -> bool:
        return self._first or _chat_interesting(block)

    def _quick(self, event: bytes) -> bool:
        return self._first or _chat_quick(event)

    def feed(self, data: bytes) -> None:
        self.scanner.feed(data)

    def finish(self) -> None:
        self.scanner.flush()
        if self._reasons:
            self.r.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        if self._content:
            self.r.output_messages = [self._message(i) for i in sorted(self._choices)]

    def _on_event(self, obj: JSON) -> None:
        r = self.r
        if obj is None:
            r.terminal = True
            self.done_seen = True
            return
        if self._first:
            self._first = False
            # From now on the scanner calls the byte tests directly, without the first-event check.
            self.scanner.set_tests(_chat_interesting, _chat_quick)
        err = obj.get("error")
        if isinstance(err, dict):
            code = err.get("code") or err.get("type")
            r.error_type = code if isinstance(code, str) else "_OTHER"
            return
        _common_fields(obj, r)
        usage = obj.get("usage")
        if isinstance(usage, dict):
            apply_usage(self._api, usage, r)
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self._reasons[index] = reason
            if self._content:
                self._accumulate(index, choice)

    def _accumulate(self, index: int, choice: dict[str, Any]) -> None:
        acc = self._choices.setdefault(index, {"text": [], "tools": {}})
        if self._api == COMPLETIONS:
            text = choice.get("text")
            if isinstance(text, str):
                acc["text"].append(text)
            return
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        text = delta.get("content")
        if isinstance(text, str):
            acc["text"].append(text)
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            slot = acc["tools"].setdefault(call.get("index", 0), {"id": None, "name": None, "args": []})
            if call.get("id"):
                slot["id"] = call["id"]
            fn = call.get("function") or {}
            if fn.get("name"):
                slot["name"] = fn["name"]
            if isinstance(fn.get("arguments"), str):
                slot["args"].append(fn["arguments"])

    def _message(self, index: int) -> dict[str, Any]:
        acc = self._choices[index]
        parts: list[dict[str, Any]] = []
        if acc["text"]:
            parts.append({"type": "text", "content": "".join(acc["text"])})
        for i in sorted(acc["tools"]):
            slot = acc["tools"][i]
            part: dict[str, Any] = {"type": "tool_call", "name": slot["name"]}
            if slot["id"]:
                part["id"] = slot["id"]
            if slot["args"]:
                part["arguments"] = _maybe_json("".join(slot["args"]))
            parts.append(part)
        reason = self._reasons.get(index)
        finish = _FINISH_TO_SCHEMA.get(reason, reason) if reason else "error"
        return {"role": "assistant", "parts": parts, "finish_reason": finish}


_RESPONSES_MARKERS = (b"response.created", b"response.completed", b"response.incomplete", b"response.failed")


def _responses_interesting(block: bytes) -> bool:
    return any(m in block for m in _RESPONSES_MARKERS) or b'"error"' in block


def _responses_quick(event: bytes) -> bool:
    # The event's type is in its `event:` line, or first in its JSON: look at the head only.
    return _responses_interesting(event[:64])


class ResponsesStream:
    """Responses API SSE: the final `response.completed` (or incomplete/failed) event has it all."""

    __slots__ = ("_content", "r", "scanner")

    def __init__(self, r: Result, content: bool) -> None:
        self.r = r
        self._content = content
        # The terminal event carries the whole output, so content needs no per-delta decoding.
        self.scanner = SseScanner(_responses_interesting, self._on_event, False, _responses_quick)

    def feed(self, data: bytes) -> None:
        self.scanner.feed(data)

    def finish(self) -> None:
        self.scanner.flush()

    def _on_event(self, obj: JSON) -> None:
        if obj is None:
            return
        kind = obj.get("type")
        response = obj.get("response")
        if kind == "response.created" and isinstance(response, dict):
            _common_fields(response, self.r)
        elif kind in ("response.completed", "response.incomplete", "response.failed") and isinstance(
            response, dict
        ):
            _apply_response_object(response, self.r, self._content)
            self.r.terminal = True
        elif kind == "error":
            code = obj.get("code") or get(obj, "error", "code")
            self.r.error_type = code if isinstance(code, str) else "_OTHER"
