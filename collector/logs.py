"""Structured logs: JSON lines when stderr is not a terminal, readable ``key=value`` when it is.

Components log one line per notable event (start, config, refused data with counts, export failures
with the reason), never one per span. Pass fields as ``extra={"fields": {...}}`` or use :func:`event`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["configure_logging", "event", "get_logger"]

_ROOT = "otel_llm.collector"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{key}={_quote(value)}" for key, value in getattr(record, "fields", {}).items())
        line = f"{when} {record.levelname.lower():<5} {record.name.removeprefix(_ROOT + '.')}: {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quote(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up the collector's loggers once per process; ``fmt`` is ``auto``, ``json`` or ``text``."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(_JsonFormatter() if use_json else _TextFormatter())
    root = logging.getLogger(_ROOT)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    """A logger under the collector's root (``otel_llm.collector.<name>``)."""
    return logging.getLogger(f"{_ROOT}.{name}")


def event(logger: logging.Logger, level: int, message: str, **fields: object) -> None:
    """Log one structured event with ``fields`` as separate keys."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"fields": fields})
