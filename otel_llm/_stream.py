"""Tees of a response's byte stream: the SDK reads the same bytes; we time and scan them on the way.

The wrapper replaces `response.stream` on the SDK's own response object (nothing else changes). It
ends the call exactly once on every path:

- the body read to its end                  -> normal end
- an exception from the network mid-body    -> error.type = the exception's class, re-raised unchanged
- `response.close()` / `aclose()` (SDK `close()`, `with` exit, early `break` then close) -> normal end
- the stream dropped without close: the generator is closed by the garbage collector, or the wrapper
  is collected unread (weakref.finalize) -> end with `otel_llm.stream.abandoned=true`

Per piece of body: one `perf_counter()` and the provider scanner's byte tests (`_providers._common.SseScanner`); only events that carry ids, usage, finish reasons or errors are JSON-decoded.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from time import perf_counter
from typing import Any

from otel_llm._call import LLMCall


def _abandon(call: LLMCall) -> None:
    call.end(abandoned=True)


def _watcher(call: LLMCall) -> Callable[[bytes], None]:
    """The per-chunk step of both tees: time the chunk, then scan it (or keep it for a parse at the end).

    Never raises: a fault of ours stops the watching for the rest of this body and is counted.
    """
    parser = call.parser
    scanner = parser.scanner if parser is not None else None
    feed = scanner.feed if scanner is not None else None
    keep = call.keep if parser is None else None
    # The scanner's event count, read around each feed, when the gaps between chunks are recorded.
    counted = scanner if call.chunk_gaps is not None else None

    def watch(data: bytes) -> None:
        nonlocal feed, keep
        try:
            now = perf_counter()
            if feed is not None:
                if not call.first_chunk:
                    call.first_chunk = now
                call.last_chunk = now
                if counted is not None:
                    before = counted.events
                    feed(data)
                    call.note_events(now, counted.events - before)
                else:
                    feed(data)
            elif keep is not None:
                keep(data)
        except Exception:
            # Our fault, not the application's: stop reading this body, let the bytes through.
            feed = keep = None
            call.rt.count_error("stream", call.endpoint.provider)

    return watch


class _TeeBase:
    # No __slots__: the concrete classes also derive from the HTTP library's byte-stream base class
    # (see `_transport.tee_classes`), which the library checks with isinstance().

    def __init__(self, inner: Any, call: LLMCall) -> None:
        self._inner = inner
        self._call = call
        fin = weakref.finalize(self, _abandon, call)
        fin.atexit = False
        self._finalizer = fin

    @property
    def elapsed(self) -> Any:
        # httpx/httpx2 read `response.stream.elapsed` for `response.elapsed`.
        return getattr(self._inner, "elapsed", None)

    def _done(
        self, error_type: str | None = None, exc: BaseException | None = None, abandoned: bool = False
    ) -> None:
        self._finalizer.detach()
        self._call.end(error_type=error_type, exc=exc, abandoned=abandoned)


class SyncTee(_TeeBase):
    """For `httpx.SyncByteStream` / `httpx2.SyncByteStream`."""

    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        watch = _watcher(call)
        try:
            for data in self._inner:
                if data:
                    watch(data)
                yield data
        except GeneratorExit:
            # Closed without close() on the response: the stream was dropped and collected.
            self._done(abandoned=not call.ended)
            raise
        except BaseException as exc:
            self._done(error_type=type(exc).__qualname__, exc=exc)
            raise
        self._done()

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._done()


class AsyncTee(_TeeBase):
    """For `httpx.AsyncByteStream` / `httpx2.AsyncByteStream`."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        call = self._call
        watch = _watcher(call)
        try:
            async for data in self._inner:
                if data:
                    watch(data)
                yield data
        except GeneratorExit:
            self._done(abandoned=not call.ended)
            raise
        except BaseException as exc:
            self._done(error_type=type(exc).__qualname__, exc=exc)
            raise
        self._done()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._done()
