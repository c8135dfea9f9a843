"""The ``anomaly`` processor's ``state_file``: open alerts saved across restarts, written atomically.

One JSON document::

    {"version": 1, "saved_at": <data time>, "alerts": [
      {"rule": "...", "key": ["checkout", "gpt-4o"], "labels": {"service_name": "checkout", ...},
       "state": "firing", "since": 1750000000.0, "severity": "page", "value": 0.31,
       "last_notification": {"status": "firing", "starts_at": ..., "labels": {...}, ...} | null}
    ]}

Written to a temporary file in the same directory, flushed to disk, then renamed over the old one,
so a crash leaves either the previous or the new document, never half of one. Non-finite numbers
are written as ``null``. Nothing here knows about rules or routes; the processor decides what a
restored alert means.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from collector.alerting.engine import AlertState, OpenAlert
from collector.alerting.notifiers import Notification

__all__ = ["SavedState", "load_state", "save_state"]

VERSION = 1


@dataclass(frozen=True, slots=True)
class SavedState:
    """What a state file holds: open alerts, the last firing notification of each, and when."""

    saved_at: float
    alerts: tuple[OpenAlert, ...]
    notifications: Mapping[str, Notification]  # fingerprint -> last firing notification


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _back(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def save_state(
    path: str | Path, alerts: Sequence[OpenAlert], notifications: Mapping[str, Notification], at: float
) -> None:
    """Write the open alerts atomically (temporary file, fsync, rename); raises ``OSError``."""
    entries = []
    for alert in alerts:
        notified = notifications.get(alert.fingerprint)
        last: dict[str, Any] | None = None
        if notified is not None:
            last = asdict(notified)
            for name in ("starts_at", "ends_at", "value", "baseline"):
                last[name] = _number(last[name])
        entries.append(
            {
                "rule": alert.rule,
                "key": list(alert.key),
                "labels": dict(alert.labels),
                "state": alert.state.value,
                "since": _number(alert.since),
                "severity": alert.severity,
                "value": _number(alert.value),
                "last_notification": last,
            }
        )
    document = {"version": VERSION, "saved_at": _number(at), "alerts": entries}
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the platform allows
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def load_state(path: str | Path) -> SavedState | None:
    """The saved state, or ``None`` when there is no file; ``ValueError`` when it is not readable."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("version") != VERSION:
            raise ValueError(f"expected a version {VERSION} alert state document")
        alerts: list[OpenAlert] = []
        notifications: dict[str, Notification] = {}
        for entry in document["alerts"]:
            alert = OpenAlert(
                rule=str(entry["rule"]),
                key=tuple(str(part) for part in entry["key"]),
                labels={str(k): str(v) for k, v in entry["labels"].items()},
                state=AlertState(entry["state"]),
                since=_back(entry["since"]),
                severity=str(entry["severity"]),
                value=_back(entry["value"]),
            )
            alerts.append(alert)
            last = entry.get("last_notification")
            if isinstance(last, dict) and last.get("status") == "firing":
                notification = Notification(
                    fingerprint=str(last["fingerprint"]),
                    rule=str(last["rule"]),
                    status="firing",
                    severity=str(last["severity"]),
                    labels={str(k): str(v) for k, v in last["labels"].items()},
                    annotations={str(k): str(v) for k, v in last["annotations"].items()},
                    starts_at=_back(last["starts_at"]),
                    ends_at=None,
                    value=_back(last["value"]),
                    baseline=_back(last["baseline"]),
                    generator_url=str(last.get("generator_url", "")),
                )
                notifications[notification.fingerprint] = notification
        return SavedState(_back(document.get("saved_at")), tuple(alerts), notifications)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"{target}: not a readable alert state file: {exc}") from None
