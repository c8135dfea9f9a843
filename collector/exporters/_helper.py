"""The exporter helper: sending queue, retry with backoff, timeouts and counting, around one ``send``.

An exporter module supplies a :class:`Sender` (how one serialised request reaches the backend, and
how its answer maps to :class:`~collector.errors.RetryableExportError` or
:class:`~collector.errors.PermanentExportError`); :class:`QueuedExporter` does the rest, with the
OpenTelemetry Collector's defaults:

- ``consume(batch)`` serialises the request and appends it to the sending queue (in memory, or in a
  SQLite file with ``sending_queue::storage``) and returns; a full queue raises
  :class:`~collector.errors.RefusedError`, so the receiver answers with a retryable code and the
  sender keeps the data, and the items are counted in ``otelcol_exporter_enqueue_failed_*``.
- ``num_consumers`` threads take requests off the queue and send them, retrying retryable failures
  with exponential backoff and jitter (never sooner than the backend's RetryInfo / Retry-After)
  until ``max_elapsed_time``. Permanent failures (400, INVALID_ARGUMENT, ...) are dropped at once and
  counted in ``otelcol_exporter_send_failed_*`` with a log line naming the reason.
- ``shutdown(timeout_s)`` stops taking data, sends what is queued until the timeout, then stops. What
  is left is counted as failed and logged (memory queue) or stays on disk for the next start.

With ``sending_queue::enabled: false`` the send (with its retries) runs in the receiver's thread and a
failure goes back to the client as a retryable refusal.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Host, Signal
from collector.data import Batch
from collector.durations import Duration
from collector.errors import PermanentExportError, RefusedError, RetryableExportError
from collector.exporters._queue import Entry, MemoryQueue, SqliteQueue
from collector.logs import event
from collector.telemetry import ExporterTelemetry

__all__ = [
    "ClientTLSSettings",
    "ExporterConfig",
    "QueueSettings",
    "QueuedExporter",
    "RetrySettings",
    "Sender",
    "backoff_delays",
]

# Transient failures are summarised in the log at most this often, not one line per retry.
_LOG_EVERY_S = 10.0
_SIGNAL_WORD = {Signal.TRACES: "traces", Signal.METRICS: "metrics", Signal.LOGS: "logs"}


class RetrySettings(ComponentConfig):
    """``retry_on_failure``: exponential backoff with jitter (the Collector's defaults)."""

    enabled: bool = Field(
        True, description="Retry retryable failures; off: a failed request is dropped and counted."
    )
    initial_interval: Duration = Field(5.0, description="Wait before the first retry.")
    max_interval: Duration = Field(30.0, description="Upper bound of one wait.")
    max_elapsed_time: Duration = Field(
        300.0, description="Give up on a request after this long (then counted as failed). 0: never."
    )
    multiplier: float = Field(1.5, ge=1.0, description="Each wait is the previous one times this.")
    randomization_factor: float = Field(
        0.5, ge=0.0, le=1.0, description="Jitter: a wait is drawn from interval * (1 ± factor)."
    )

    def problems(self) -> list[tuple[str, str]]:
        if self.initial_interval <= 0:
            return [("initial_interval", "expected a duration above zero")]
        if self.max_interval < self.initial_interval:
            return [("max_interval", "expected at least initial_interval")]
        return []


class QueueSettings(ComponentConfig):
    """``sending_queue``: the bounded queue in front of the senders, counted in requests."""

    enabled: bool = Field(True, description="Queue requests; off: send in the receiver's thread.")
    num_consumers: int = Field(10, ge=1, le=256, description="Threads sending from the queue.")
    queue_size: int = Field(1000, ge=1, description="Capacity in requests; a full queue refuses new data.")
    storage: str | None = Field(
        None,
        description="Directory (or `.sqlite` file) for a persistent queue that survives restarts and "
        "crashes; null: in memory.",
    )


class ClientTLSSettings(ComponentConfig):
    """``tls`` of an exporter."""

    insecure: bool = Field(False, description="Plain text, no TLS (as the Collector, TLS is the default).")
    ca_file: str | None = Field(None, description="PEM CAs to verify the server with; default: system roots.")
    cert_file: str | None = Field(None, description="Client certificate for mTLS.")
    key_file: str | None = Field(None, description="Client private key for mTLS.")
    insecure_skip_verify: bool = Field(False, description="TLS without verifying the server (tests only).")
    server_name_override: str | None = Field(
        None, description="Name to verify the server certificate against."
    )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if (self.cert_file is None) != (self.key_file is None):
            out.append(("cert_file", "cert_file and key_file go together"))
        return out + self.missing_files("ca_file", "cert_file", "key_file")


class ExporterConfig(ComponentConfig):
    """Settings every OTLP exporter shares."""

    endpoint: str = Field(description="Where to send (see the exporter's description).")
    timeout: Duration = Field(5.0, gt=0, description="Limit of one send attempt.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers (gRPC metadata) on every request."
    )
    compression: str = Field("gzip", pattern="^(gzip|none)$", description="`gzip` or `none`.")
    bearer_token: str | None = Field(None, description="Sends `Authorization: Bearer <token>`.")
    tls: ClientTLSSettings = Field(default_factory=ClientTLSSettings)
    retry_on_failure: RetrySettings = Field(default_factory=RetrySettings)
    sending_queue: QueueSettings = Field(default_factory=QueueSettings)


class Sender(Protocol):
    """Delivers one serialised request; raises Retryable/PermanentExportError. Thread-safe."""

    def start(self) -> None: ...

    def send(self, signal: Signal, payload: bytes, timeout_s: float) -> int:
        """Send; return how many items the backend rejected in a partial success (0 normally)."""
        ...

    def close(self) -> None: ...


def backoff_delays(settings: RetrySettings, rng: random.Random) -> Callable[[], float]:
    """A function giving the next wait of an exponential backoff with jitter."""
    interval = [settings.initial_interval]

    def next_delay() -> float:
        current = interval[0]
        interval[0] = min(current * settings.multiplier, settings.max_interval)
        spread = settings.randomization_factor * current
        return max(0.0, current - spread + rng.random() * 2 * spread)

    return next_delay


class _FailureLog:
    """Summarises transient failures: at most one warning per interval, with counts and the last reason."""

    def __init__(self, logger: logging.Logger, exporter: str) -> None:
        self._logger = logger
        self._exporter = exporter
        self._lock = threading.Lock()
        self._count = 0
        self._reason = ""
        self._last = 0.0

    def add(self, reason: str) -> None:
        with self._lock:
            self._count += 1
            self._reason = reason
            now = time.monotonic()
            if now - self._last < _LOG_EVERY_S:
                return
            count, self._count, self._last = self._count, 0, now
        event(
            self._logger,
            logging.WARNING,
            "export failed, retrying",
            exporter=self._exporter,
            failures=count,
            reason=reason,
        )


class QueuedExporter:
    """Queue + consumers + retry around a :class:`Sender`; the exporters subclass or wrap it."""

    def __init__(
        self,
        config: ExporterConfig,
        settings: CreateSettings,
        sender: Sender,
        signals: frozenset[Signal],
    ) -> None:
        self.config = config
        self._id = str(settings.id)
        self._logger = settings.logger
        self._sender = sender
        self._telemetry: dict[Signal, ExporterTelemetry] = {
            signal: settings.telemetry.for_exporter(self._id, signal) for signal in signals
        }
        queue = config.sending_queue
        self._queue: MemoryQueue | SqliteQueue | None = None
        if queue.enabled:
            if queue.storage:
                self._queue = SqliteQueue(
                    _storage_file(queue.storage, self._id), queue.queue_size, self._set_size
                )
            else:
                self._queue = MemoryQueue(queue.queue_size, self._set_size)
        self._threads: list[threading.Thread] = []
        self._accepting = False
        self._stop = threading.Event()  # consumers: stop once the queue is empty
        self._abort = threading.Event()  # consumers: stop now, even mid-retry
        self._failures = _FailureLog(self._logger, self._id)
        self._rng = random.Random()
        self._state_lock = threading.Lock()
        self._started = False

    def _set_size(self, signal: Signal, size: int) -> None:
        telemetry = self._telemetry.get(signal)
        if telemetry is not None:
            telemetry.queue_size.set(size)

    @property
    def queue_size(self) -> int:
        """Requests queued or being sent."""
        return len(self._queue) if self._queue is not None else 0

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        with self._state_lock:
            if self._started:
                return
            self._started = True
            self._stop.clear()
            self._abort.clear()
        self._sender.start()
        queue = self._queue
        capacity = queue.capacity if queue is not None else 0
        for telemetry in self._telemetry.values():
            telemetry.queue_capacity.set(capacity)
        recovered = 0
        if queue is not None:
            if isinstance(queue, SqliteQueue):
                queue.path = _storage_file(
                    self.config.sending_queue.storage or "", self._id, _worker_suffix(host)
                )
            opened = queue.open()
            recovered = opened or 0
            for index in range(self.config.sending_queue.num_consumers):
                thread = threading.Thread(
                    target=self._consume_loop, name=f"exporter-{self._id}-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        self._accepting = True
        event(
            self._logger,
            logging.INFO,
            "exporter started",
            exporter=self._id,
            endpoint=self.config.endpoint,
            queue="off" if queue is None else ("persistent" if queue.persistent else "memory"),
            queue_size=capacity,
            recovered_requests=recovered,
        )

    def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, send what is queued until ``timeout_s``, then stop the consumers."""
        with self._state_lock:
            if not self._started:
                return
            self._started = False
        self._accepting = False
        deadline = time.monotonic() + max(timeout_s, 0.0)
        queue = self._queue
        if queue is not None:
            self._stop.set()
            queue.wake_all()
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            self._abort.set()
            queue.wake_all()
            for thread in self._threads:
                thread.join(2.0)
            self._threads.clear()
            left = len(queue)
            dropped = queue.drain()
            for entry in dropped:
                self._telemetry[entry.signal].send_failed.inc(entry.items)
            if dropped:
                event(
                    self._logger,
                    logging.ERROR,
                    "exporter stopped with unsent data, dropped",
                    exporter=self._id,
                    requests=len(dropped),
                    items=sum(entry.items for entry in dropped),
                )
            elif left and queue.persistent:
                event(
                    self._logger,
                    logging.WARNING,
                    "exporter stopped with unsent data, kept on disk for the next start",
                    exporter=self._id,
                    requests=left,
                )
            queue.close()
        self._sender.close()
        self._abort.clear()

    # -- data path --------------------------------------------------------------------------------------

    def consume(self, batch: Batch) -> None:
        signal = batch.signal
        telemetry = self._telemetry[signal]
        items = batch.items
        if not self._accepting:
            telemetry.enqueue_failed.inc(items)
            raise RefusedError(f"exporter {self._id} is not running")
        entry = Entry(signal, batch.request.SerializeToString(), items)
        queue = self._queue
        if queue is None:
            if not self._deliver(entry, synchronous=True):
                raise RefusedError(f"exporter {self._id}: the backend did not take the data")
            return
        if not queue.put(entry):
            telemetry.enqueue_failed.inc(items)
            raise RefusedError(
                f"exporter {self._id}: sending queue is full",
                retry_after_s=self.config.retry_on_failure.initial_interval,
            )

    def _consume_loop(self) -> None:
        queue = self._queue
        assert queue is not None
        while not self._abort.is_set():
            entry = queue.get(0.2)
            if entry is None:
                if self._stop.is_set():
                    return
                continue
            if self._deliver(entry, synchronous=False):
                queue.done(entry)
            else:
                queue.give_back(entry)
                if not queue.persistent:
                    self._telemetry[entry.signal].send_failed.inc(entry.items)
                    event(
                        self._logger,
                        logging.ERROR,
                        "exporter stopped while retrying, dropped",
                        exporter=self._id,
                        items=entry.items,
                    )

    def _send(self, entry: Entry) -> int:
        try:
            return self._sender.send(entry.signal, entry.payload, self.config.timeout)
        except (RetryableExportError, PermanentExportError):
            raise
        except Exception as exc:  # a sender bug or a channel closed under us: retry, never kill the thread
            self._logger.debug("unexpected send failure", exc_info=True)
            raise _unexpected(exc) from exc

    def _deliver(self, entry: Entry, synchronous: bool) -> bool:
        """Send with retries. True when finished (sent, or dropped and counted); False when aborted
        (or, synchronous, when retries ran out: the caller refuses so the client keeps the data)."""
        telemetry = self._telemetry[entry.signal]
        retry = self.config.retry_on_failure
        started = time.monotonic()
        next_delay = backoff_delays(retry, self._rng)
        attempts = 0
        while True:
            attempts += 1
            try:
                rejected = self._send(entry)
            except PermanentExportError as exc:
                telemetry.send_failed.inc(entry.items)
                event(
                    self._logger,
                    logging.ERROR,
                    "export failed permanently, data dropped",
                    exporter=self._id,
                    signal=entry.signal.value,
                    items=entry.items,
                    reason=str(exc),
                )
                return True
            except RetryableExportError as exc:
                delay = next_delay()
                if exc.retry_after_s is not None:
                    delay = max(delay, exc.retry_after_s)
                elapsed = time.monotonic() - started
                out_of_time = retry.max_elapsed_time and elapsed + delay > retry.max_elapsed_time
                if not retry.enabled or out_of_time:
                    if synchronous:
                        return False
                    telemetry.send_failed.inc(entry.items)
                    event(
                        self._logger,
                        logging.ERROR,
                        "export failed after retries, data dropped",
                        exporter=self._id,
                        signal=entry.signal.value,
                        items=entry.items,
                        attempts=attempts,
                        reason=exc.reason,
                    )
                    return True
                self._failures.add(exc.reason)
                if self._abort.wait(delay):
                    return False
                continue
            telemetry.sent.inc(entry.items - rejected)
            if rejected:
                telemetry.send_failed.inc(rejected)
            return True


def _unexpected(exc: Exception) -> RetryableExportError:
    return RetryableExportError(f"{type(exc).__name__}: {exc}")


def _worker_suffix(host: Host) -> str:
    """``-w<i>`` for worker i of ``service::workers`` (instance ids end so), else empty."""
    match = re.search(r"-w(\d+)$", str(host.shared.get("collector.service.instance_id", "")))
    return f"-w{match.group(1)}" if match else ""


def _storage_file(storage: str, exporter_id: str, worker: str = "") -> Path:
    """The queue file: ``<dir>/<exporter id><worker>.sqlite``, or the file named, plus the worker."""
    path = Path(storage)
    if path.suffix in {".sqlite", ".db", ".sqlite3"}:
        return path.with_name(f"{path.stem}{worker}{path.suffix}") if worker else path
    return path / f"{exporter_id.replace('/', '_')}{worker}.sqlite"


def signal_word(signal: Signal) -> str:
    """``traces`` / ``metrics`` / ``logs``."""
    return _SIGNAL_WORD[signal]
