"""What the providers' parsers share: the result of one call and a small SSE scanner."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

JSON = Any


class Result:
    """What the response said, filled in by a provider parser; read when the call ends.

    One per call. Only the thread that reads the response body writes to it.
    """

    __slots__ = (
        "cache_read",
        "cache_write",
        "error_type",
        "extra",
        "finish_reasons",
        "input_tokens",
        "output_messages",
        "output_tokens",
        "reasoning",
        "response_id",
        "response_model",
        "terminal",
    )

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read: int | None = None
        self.cache_write: int | None = None
        self.reasoning: int | None = None
        self.error_type: str | None = None
        # Provider-specific span attributes (service tier, fingerprint...).
        self.extra: dict[str, Any] | None = None
        # Output messages in the upstream schema, only when content is captured.
        self.output_messages: list[dict[str, Any]] | None = None
        # Whether the stream reached its last event (usage, [DONE], message_stop, response.completed).
        self.terminal = False

    def set_extra(self, key: str, value: Any) -> None:
        if value is None:
            return
        if self.extra is None:
            self.extra = {}
        self.extra[key] = value


def as_int(value: Any) -> int | None:
    # bool is an int subclass; a JSON true is not a token count.
    return value if type(value) is int else None


def get(obj: Any, *path: str) -> Any:
    """The value at `path` in nested dicts, or None."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


_decode = json.JSONDecoder().decode


def loads(data: bytes | str) -> JSON:
    """`data` decoded, or None when it is not JSON.

    Bytes are UTF-8, with or without a BOM, as JSON exchanged between systems must be (RFC 8259):
    decoding them here skips `json.loads`' encoding detection, several calls on every body.
    """
    try:
        text = data.decode() if isinstance(data, (bytes, bytearray)) else data
        if text.startswith("\ufeff"):
            text = text[1:]
        return _decode(text)
    except ValueError:  # UnicodeDecodeError included
        return None


def error_code(body: bytes) -> str | None:
    """The provider's error code from an error body (OpenAI `error.code`/`error.type`, Anthropic `error.type`)."""
    obj = loads(body) if body else None
    err = get(obj, "error")
    if isinstance(err, dict):
        for key in ("code", "type"):
            value = err.get(key)
            if isinstance(value, str) and value:
                return value
    return None


class SseScanner:
    """Splits a byte stream into SSE events and hands the interesting ones, decoded, to `on_event`.

    Cost per piece of body: one `bytes.count` for the event boundaries (also the event count), plus
    `quick(event)` when the piece is exactly one event (the usual case: servers flush one event per
    write), a cheap test that looks only at the event's head or tail. A piece holding several events,
    or a part of one, is tested exactly with `interesting(block)`, and only the events that pass are
    split and JSON-decoded. With `every_event` every event is decoded (content capture needs all the
    deltas). Never raises on bad input.
    """

    __slots__ = ("_every", "_interesting", "_on_event", "_quick", "_tail", "events")

    def __init__(
        self,
        interesting: Callable[[bytes], bool],
        on_event: Callable[[JSON], None],
        every_event: bool,
        quick: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._tail = b""
        self._interesting = interesting
        self._quick = quick or interesting
        self._on_event = on_event
        self._every = every_event
        # Complete events seen so far (blank-line terminated).
        self.events = 0

    def set_tests(self, interesting: Callable[[bytes], bool], quick: Callable[[bytes], bool]) -> None:
        self._interesting = interesting
        self._quick = quick

    def feed(self, data: bytes) -> None:
        tail = self._tail
        if tail:
            data = tail + data
            self._tail = b""
        n = data.count(b"\n\n")
        if not n:
            if b"\r\n\r\n" in data:
                data = data.replace(b"\r\n", b"\n")
                n = data.count(b"\n\n")
            if not n:
                self._tail = data
                return
        if not data.endswith(b"\n\n"):
            end = data.rfind(b"\n\n") + 2
            self._tail = data[end:]
            data = data[:end]
        self.events += n
        if self._every:
            self._decode(data)
        elif n == 1:
            if self._quick(data):
                self._decode(data)
        elif self._interesting(data):
            self._decode(data)

    def flush(self) -> None:
        """Decodes a last event that had no blank line after it."""
        tail, self._tail = self._tail, b""
        if tail.strip():
            self.events += 1
            if self._every or self._interesting(tail):
                self._decode(tail)

    def _decode(self, block: bytes) -> None:
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")
        every = self._every
        interesting = self._interesting
        for event in block.split(b"\n\n"):
            if not event or (not every and not interesting(event)):
                continue
            payload = None
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    piece = line[5:]
                    payload = piece if payload is None else payload + b"\n" + piece
            if payload is None:
                continue
            payload = payload.strip()
            if payload == b"[DONE]":
                self._on_event(None)
                continue
            obj = loads(payload)
            if isinstance(obj, dict):
                self._on_event(obj)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]
