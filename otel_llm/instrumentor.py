"""`LLMInstrumentor`: GenAI spans and metrics for every LLM call made through httpx or httpx2.

    from otel_llm import LLMInstrumentor

    LLMInstrumentor().instrument(tracer_provider=tp, meter_provider=mp, logger_provider=lp)
    ...
    LLMInstrumentor().uninstrument()

Registered under the `opentelemetry_instrumentor` entry point as `otel_llm`, so
`opentelemetry-instrument python app.py` turns it on with no code change.

The hooks sit on `Client.send` / `AsyncClient.send` of httpx and httpx2, not on the transports: see
`otel_llm._transport` for why. The manual is the docstring of `otel_llm`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry._logs import get_logger
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.metrics import get_meter
from opentelemetry.trace import get_tracer

from otel_llm import _config
from otel_llm._call import Runtime
from otel_llm._instruments import Instruments
from otel_llm._transport import TransportHooks
from otel_llm.version import __version__

__all__ = ["LLMInstrumentor"]

INSTRUMENTATION_SCOPE = "otel_llm"


class LLMInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Hooks `Client.send` / `AsyncClient.send` of httpx and httpx2 (whichever are installed).

    A singleton (as every `BaseInstrumentor`): `instrument()` twice does nothing the second time,
    `uninstrument()` restores the original methods. Settings are read from the environment at
    `instrument()` (see `otel_llm.environment_variables`).
    """

    _hooks: TransportHooks | None = None
    hooked_libraries: tuple[str, ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        # Either httpx or httpx2 is enough, and BaseInstrumentor would refuse to instrument unless
        # every listed requirement is installed; so list none and hook whichever is importable.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        tracer = get_tracer(
            INSTRUMENTATION_SCOPE,
            __version__,
            tracer_provider=kwargs.get("tracer_provider"),
        )
        meter = get_meter(INSTRUMENTATION_SCOPE, __version__, meter_provider=kwargs.get("meter_provider"))
        event_logger = get_logger(
            INSTRUMENTATION_SCOPE, __version__, logger_provider=kwargs.get("logger_provider")
        )
        settings = _config.from_environment()
        runtime = Runtime(tracer, event_logger, Instruments(meter), settings)
        hooks = TransportHooks()
        self.hooked_libraries = tuple(hooks.install(runtime))
        self._hooks = hooks

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._hooks is not None:
            self._hooks.uninstall()
            self._hooks = None
        self.hooked_libraries = ()
