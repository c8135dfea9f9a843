"""The collector's exception tree.

::

    CollectorError
    ├── ConfigError            bad configuration; carries every problem found, each with its key path
    ├── ComponentError         a component could not start (port in use, unreadable certificate, ...)
    ├── RefusedError           the pipeline refuses data for now (memory limiter, full queue); retryable
    └── ExportError
        ├── RetryableExportError   the backend may accept the same data later (5xx, 429, UNAVAILABLE)
        └── PermanentExportError   the backend will never accept this data (most 4xx); counted and dropped

Receivers translate ``RefusedError`` into ``UNAVAILABLE`` with ``RetryInfo`` (gRPC) or ``503`` with
``Retry-After`` (HTTP), so that standard OTLP exporters back off instead of dropping.
"""

from __future__ import annotations

__all__ = [
    "CollectorError",
    "ComponentError",
    "ConfigError",
    "ExportError",
    "PermanentExportError",
    "RefusedError",
    "RetryableExportError",
]


class CollectorError(Exception):
    """Base of every error the collector raises on purpose."""


class ConfigError(CollectorError):
    """The configuration is invalid; ``problems`` holds one line per mistake, all found at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ComponentError(CollectorError):
    """A component failed to start or stop; the message names the component."""


class RefusedError(CollectorError):
    """Data is refused for now; the sender should retry after ``retry_after_s`` seconds."""

    def __init__(self, reason: str, retry_after_s: float = 1.0) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(reason)


class ExportError(CollectorError):
    """An export attempt failed."""


class RetryableExportError(ExportError):
    """The backend may accept the data later; ``retry_after_s`` is its throttle hint, if it sent one."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(reason)


class PermanentExportError(ExportError):
    """The backend rejected the data for good (for example HTTP 400); retrying cannot help."""
