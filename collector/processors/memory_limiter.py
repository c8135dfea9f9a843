"""``memory_limiter`` processor: refuse data while the process uses too much memory.

::

    processors:
      memory_limiter:
        check_interval: 1s
        limit_percentage: 80          # of the cgroup limit, else of physical memory; or limit_mib
        spike_limit_percentage: 20    # soft limit = limit - spike (default spike: 20 % of the limit)

A background thread reads the resident set size from ``/proc/self/statm`` every ``check_interval``
(never per batch). Above the soft limit every batch is refused with a retryable
:class:`~collector.errors.RefusedError` (the receiver answers UNAVAILABLE + RetryInfo / 503 +
Retry-After) and the service status holder's ``refusing`` is set, which makes the receivers refuse at
the transport before decoding and the health check answer 503. Above the hard limit it also runs
``gc.collect()`` (at most once per check). Put it first in every pipeline. Every pipeline instance of
one ``memory_limiter`` id shares one monitor thread.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind
from collector.data import Batch
from collector.durations import Duration
from collector.errors import RefusedError
from collector.logs import event

__all__ = ["FACTORY", "MemoryLimiterConfig", "MemoryLimiterProcessor", "memory_limit_bytes", "rss_bytes"]

_MIB = 1024 * 1024
_STATUS_KEY = "collector.service.status"
# cgroup v1 reports "no limit" as a huge number (page-rounded LONG_MAX).
_UNLIMITED_V1 = 1 << 60


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def memory_limit_bytes(root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), else physical memory."""
    for candidate in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < _UNLIMITED_V1:
            return int(text)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


class MemoryLimiterConfig(ComponentConfig):
    """The ``memory_limiter`` processor; one of ``limit_mib`` / ``limit_percentage`` is required."""

    check_interval: Duration = Field(1.0, gt=0, description="How often memory use is measured.")
    limit_mib: int = Field(
        0, ge=0, description="Hard limit in MiB of resident memory. 0: use limit_percentage."
    )
    limit_percentage: float = Field(
        0.0, ge=0, le=100, description="Hard limit as % of the cgroup limit (else of physical memory)."
    )
    spike_limit_mib: int = Field(
        0, ge=0, description="Headroom below the hard limit; soft limit = hard - spike. 0: 20 % of the limit."
    )
    spike_limit_percentage: float = Field(
        0.0, ge=0, le=100, description="Headroom as % of the cgroup limit (with limit_percentage)."
    )
    retry_after: Duration = Field(1.0, description="Delay suggested to refused clients.")

    def problems(self) -> list[tuple[str, str]]:
        if self.limit_mib and self.limit_percentage:
            return [("limit_mib", "give limit_mib or limit_percentage, not both")]
        if not self.limit_mib and not self.limit_percentage:
            return [("limit_mib", "one of limit_mib or limit_percentage is required")]
        if self.limit_mib and self.spike_limit_mib >= self.limit_mib:
            return [("spike_limit_mib", f"must be below limit_mib ({self.limit_mib})")]
        if self.limit_percentage and self.spike_limit_percentage >= self.limit_percentage:
            return [("spike_limit_percentage", f"must be below limit_percentage ({self.limit_percentage})")]
        return []

    def limits(self, total: int | None = None) -> tuple[int, int]:
        """(soft, hard) limits in bytes."""
        if self.limit_mib:
            hard = self.limit_mib * _MIB
            spike = self.spike_limit_mib * _MIB if self.spike_limit_mib else hard // 5
        else:
            total = memory_limit_bytes() if total is None else total
            hard = int(total * self.limit_percentage / 100)
            spike = (
                int(total * self.spike_limit_percentage / 100) if self.spike_limit_percentage else hard // 5
            )
        return hard - spike, hard


class _Monitor:
    """The measuring thread of one memory_limiter id; shared by its pipeline instances."""

    def __init__(self, config: MemoryLimiterConfig, name: str, logger: logging.Logger) -> None:
        self.soft, self.hard = config.limits()
        self.over_soft = False
        self.rss = 0
        self.peak_rss = 0
        self._interval = config.check_interval
        self._name = name
        self._logger = logger
        self._status: Any = None
        self._users = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, host: Host) -> None:
        with self._lock:
            self._users += 1
            if self._thread is not None:
                return
            self._status = host.shared.get(_STATUS_KEY)
            self._stop.clear()
            self.check()
            self._thread = threading.Thread(
                target=self._run, name=f"memory-limiter-{self._name}", daemon=True
            )
            self._thread.start()
        event(
            self._logger,
            logging.INFO,
            "memory limiter started",
            processor=self._name,
            soft_limit_mib=self.soft // _MIB,
            hard_limit_mib=self.hard // _MIB,
            rss_mib=self.rss // _MIB,
        )

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            thread, self._thread = self._thread, None
        self._stop.set()
        thread.join(2.0)
        self._set_refusing(False)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.check()

    def check(self) -> None:
        """Measure once and update the state (the thread calls it; tests may too)."""
        rss = rss_bytes()
        self.rss = rss
        self.peak_rss = max(self.peak_rss, rss)
        if rss > self.hard:
            gc.collect()
            rss = rss_bytes()
            self.rss = rss
        over = rss > self.soft
        if over != self.over_soft:
            self.over_soft = over
            self._set_refusing(over)
            event(
                self._logger,
                logging.WARNING if over else logging.INFO,
                "memory above soft limit, refusing data"
                if over
                else "memory back below soft limit, accepting data",
                processor=self._name,
                rss_mib=rss // _MIB,
                soft_limit_mib=self.soft // _MIB,
                hard_limit_mib=self.hard // _MIB,
            )

    def _set_refusing(self, on: bool) -> None:
        status = self._status
        if status is None:
            return
        key = f"memory_limiter/{self._name}"
        if on:
            status.reasons[key] = (
                f"memory above soft limit ({self.rss // _MIB} MiB > {self.soft // _MIB} MiB)"
            )
        else:
            status.reasons.pop(key, None)
        status.refusing = any(name.startswith("memory_limiter/") for name in status.reasons)


class MemoryLimiterProcessor:
    """Passes batches through, or refuses them while memory is above the soft limit."""

    def __init__(self, config: MemoryLimiterConfig, settings: CreateSettings) -> None:
        self.config = config
        self._name = str(settings.id)
        self._logger = settings.logger
        self._monitor: _Monitor | None = None
        self._host: Host | None = None

    @property
    def monitor(self) -> _Monitor | None:
        """The shared monitor (set after start)."""
        return self._monitor

    def start(self, host: Host) -> None:
        if self._monitor is not None:
            return
        monitor: _Monitor = host.get_shared(
            f"collector.processors.memory_limiter/{self._name}",
            lambda: _Monitor(self.config, self._name, self._logger),
        )
        monitor.acquire(host)
        self._monitor = monitor

    def shutdown(self, timeout_s: float) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.release()

    def process(self, batch: Batch) -> Batch | None:
        monitor = self._monitor
        if monitor is not None and monitor.over_soft:
            raise RefusedError(
                f"memory_limiter {self._name}: memory above soft limit", retry_after_s=self.config.retry_after
            )
        return batch


def _create(config: MemoryLimiterConfig, settings: CreateSettings) -> MemoryLimiterProcessor:
    return MemoryLimiterProcessor(config, settings)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="memory_limiter",
    config_type=MemoryLimiterConfig,
    create=_create,
    description="Refuses data (retryably) while resident memory is above a soft limit.",
)
