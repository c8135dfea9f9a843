"""Hooks on `Client.send` / `AsyncClient.send` of httpx and httpx2.

Why `send` and not `HTTPTransport.handle_request`:
- every request of a client goes through `send`, whatever its transport: the default one, a custom
  transport the application passes (`transport=`, `MockTransport`, an aiohttp-backed transport) or one
  wrapped by another library. A hook on `HTTPTransport` misses all custom transports.
- `opentelemetry-instrumentation-httpx` hooks the transport (`handle_request`, or the client's
  transport for `instrument_client`). Our span is current while `send` calls down into the transport,
  so that instrumentation's HTTP span becomes a child of the GenAI span, never a sibling, whichever
  instrumentation was installed first.
- `send` returns the SDK's own `Response`; we only replace its `stream` with a tee (see `_stream`).

Retries made by the SDK are separate `send` calls, so each attempt is its own GenAI span; redirects
and auth flows stay inside one `send` and one span.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from time import perf_counter
from typing import Any

import wrapt
from opentelemetry import context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from otel_llm._call import LLMCall, Runtime
from otel_llm._package import HTTP_LIBRARIES
from otel_llm._stream import AsyncTee, SyncTee

_TEE_CLASSES: dict[str, tuple[type[SyncTee], type[AsyncTee]]] = {}


def tee_classes(module: Any) -> tuple[type[SyncTee], type[AsyncTee]]:
    """Tee classes that are also instances of the library's own byte-stream base classes."""
    found = _TEE_CLASSES.get(module.__name__)
    if found is None:
        sync_cls = type("SyncTee", (SyncTee, module.SyncByteStream), {"__module__": __name__})
        async_cls = type("AsyncTee", (AsyncTee, module.AsyncByteStream), {"__module__": __name__})
        found = (sync_cls, async_cls)
        _TEE_CLASSES[module.__name__] = found
    return found


def _begin(rt: Runtime, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LLMCall | None:
    """The call for the request `send` got, or None to call through (not an LLM call, or our fault)."""
    try:
        return rt.begin(args[0] if args else kwargs["request"])
    except Exception:
        rt.count_error("begin")
        return None


def _after_send(rt: Runtime, call: LLMCall, response: Any, tee_cls: Callable[[Any, LLMCall], Any]) -> None:
    """Hands the response to `call`; never raises: a fault of ours is counted and ends the call."""
    try:
        _take_response(call, response, tee_cls)
    except Exception:
        rt.count_error("response")
        call.end()


def _take_response(call: LLMCall, response: Any, tee_cls: Callable[[Any, LLMCall], Any]) -> None:
    call.on_response(response.status_code, response.headers.get("content-type", ""))
    if response.is_closed:
        # `send(stream=False)` has read the whole body already.
        try:
            data = response.content
        except Exception:
            data = b""
        if data:
            if call.sse:
                call.last_chunk = perf_counter()
                call.parser.scanner.feed(data)
            else:
                call.keep(data)
        call.end()
    else:
        response.stream = tee_cls(response.stream, call)


def _sync_wrapper(rt: Runtime, tee_cls: type[SyncTee]) -> Callable[..., Any]:
    def send(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        call = _begin(rt, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        token = context.attach(call.context) if call.context is not None else None
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            if token is not None:
                context.detach(token)
            call.fail(exc)
            raise
        if token is not None:
            context.detach(token)
        _after_send(rt, call, response, tee_cls)
        return response

    return send


def _async_wrapper(rt: Runtime, tee_cls: type[AsyncTee]) -> Callable[..., Any]:
    async def send(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        call = _begin(rt, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        token = context.attach(call.context) if call.context is not None else None
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            if token is not None:
                context.detach(token)
            call.fail(exc)
            raise
        if token is not None:
            context.detach(token)
        _after_send(rt, call, response, tee_cls)
        return response

    return send


class TransportHooks:
    """Installs and removes the `send` wrappers on every importable HTTP library."""

    def __init__(self) -> None:
        self._wrapped: list[tuple[type[Any], str]] = []

    def install(self, rt: Runtime) -> list[str]:
        """Wraps `Client.send` and `AsyncClient.send`; returns the names of the libraries hooked."""
        hooked = []
        for name, _versions in HTTP_LIBRARIES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            sync_cls, async_cls = tee_classes(module)
            wrapt.wrap_function_wrapper(module, "Client.send", _sync_wrapper(rt, sync_cls))
            self._wrapped.append((module.Client, "send"))
            wrapt.wrap_function_wrapper(module, "AsyncClient.send", _async_wrapper(rt, async_cls))
            self._wrapped.append((module.AsyncClient, "send"))
            hooked.append(name)
        return hooked

    def uninstall(self) -> None:
        while self._wrapped:
            owner, attr = self._wrapped.pop()
            unwrap(owner, attr)
