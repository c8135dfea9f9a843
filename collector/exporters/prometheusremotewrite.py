"""``prometheusremotewrite``: pushes the derived metrics to a Prometheus remote-write 1.0 endpoint.

Every ``interval`` the shared store is snapshotted (cumulative, as remote write expects) and sent as
one snappy-compressed protobuf ``WriteRequest`` (``Content-Encoding: snappy``,
``X-Prometheus-Remote-Write-Version: 0.1.0``). Series and label names are those of the ``prometheus``
exporter (``otel_llm_cost_usd_total``, ``..._bucket{le=...}``); samples carry the snapshot time.

Retries follow the exporter helper's ``retry_on_failure`` (exponential backoff with jitter, never
sooner than ``Retry-After``): 5xx, 429 and connection errors are retried until ``max_elapsed_time`` or
the next snapshot is due (a newer cumulative snapshot supersedes an undelivered one); other 4xx are
dropped and logged. Shutdown sends one final snapshot within its timeout.

The protobuf messages (remote.proto / types.proto of Prometheus) are encoded by hand below: four
messages, five fields, no generated code::

    WriteRequest { repeated TimeSeries timeseries = 1; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds
"""

from __future__ import annotations

import logging
import random
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence

import cramjam
from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch
from collector.durations import Duration
from collector.errors import PermanentExportError, RetryableExportError
from collector.exporters._helper import RetrySettings, backoff_delays
from collector.logs import event
from collector.metrics import MetricStore, iter_samples, shared_store

__all__ = [
    "FACTORY",
    "PrometheusRemoteWriteExporter",
    "PrometheusRemoteWriteExporterConfig",
    "decode_write_request",
    "encode_write_request",
]

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class PrometheusRemoteWriteExporterConfig(ComponentConfig):
    """``exporters::prometheusremotewrite``."""

    endpoint: str = Field(
        description="Remote-write URL, e.g. `http://127.0.0.1:9090/api/v1/write`.", pattern="^https?://"
    )
    interval: Duration = Field(30.0, gt=0, description="How often the store is snapshotted and sent.")
    timeout: Duration = Field(5.0, gt=0, description="Limit of one send attempt.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers on every request.")
    namespace: str = Field("", description="Prefix added to every metric name (`<namespace>_`).")
    resource_to_telemetry_conversion: bool = Field(
        True, description="Add each series' resource key attributes as labels."
    )
    retry_on_failure: RetrySettings = Field(default_factory=RetrySettings)


# -- protobuf, by hand ---------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field_bytes(1, name.encode()) + _field_bytes(2, value.encode())


def _sample(value: float, timestamp_ms: int) -> bytes:
    return b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(timestamp_ms)


def encode_write_request(series: Iterable[tuple[Sequence[tuple[str, str]], float, int]]) -> bytes:
    """A ``WriteRequest`` with one sample per series: (labels incl. ``__name__``, value, timestamp ms).

    Labels are sorted by name here, as remote write requires.
    """
    out = bytearray()
    for labels, value, timestamp_ms in series:
        body = b"".join(_field_bytes(1, _label(name, text)) for name, text in sorted(labels))
        body += _field_bytes(2, _sample(value, timestamp_ms))
        out += _field_bytes(1, body)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterable[tuple[int, int | bytes | float]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire == 1:
            yield number, struct.unpack_from("<d", data, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            yield number, data[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire}")


def decode_write_request(data: bytes) -> list[tuple[dict[str, str], list[tuple[float, int]]]]:
    """Inverse of :func:`encode_write_request` (for tests): [(labels, [(value, timestamp ms)])]."""
    out: list[tuple[dict[str, str], list[tuple[float, int]]]] = []
    for number, ts in _fields(data):
        if number != 1 or not isinstance(ts, bytes):
            continue
        labels: dict[str, str] = {}
        samples: list[tuple[float, int]] = []
        for inner_number, inner in _fields(ts):
            assert isinstance(inner, bytes)
            parts = dict(_fields(inner))
            if inner_number == 1:
                name, value = parts.get(1, b""), parts.get(2, b"")
                assert isinstance(name, bytes) and isinstance(value, bytes)
                labels[name.decode()] = value.decode()
            else:
                sample_value, timestamp = parts.get(1, 0.0), parts.get(2, 0)
                samples.append((float(sample_value), int(timestamp)))
        out.append((labels, samples))
    return out


# -- the exporter --------------------------------------------------------------------------------------


class PrometheusRemoteWriteExporter:
    """Sends store snapshots on a timer thread; ``flush()`` sends one now (with retries)."""

    def __init__(self, config: PrometheusRemoteWriteExporterConfig, settings: CreateSettings) -> None:
        self.config = config
        self.settings = settings
        self.store: MetricStore | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self._rng = random.Random()
        self.sent_requests = 0
        self.failed_requests = 0

    def start(self, host: Host) -> None:
        self.store = shared_store(host)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"prometheusremotewrite[{self.settings.id}]", daemon=True
        )
        self._thread.start()

    def consume(self, batch: Batch) -> None:
        """Pipeline batches are not forwarded: this exporter sends the derived-metric store."""

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval):
            self.flush(deadline=time.monotonic() + self.config.interval)

    def payload(self) -> bytes:
        """The compressed ``WriteRequest`` of the store's current snapshot (empty bytes when empty)."""
        if self.store is None:
            return b""
        snapshots = self.store.snapshot()
        if not snapshots:
            return b""
        timestamp_ms = snapshots[0].time_ns // 1_000_000
        series = (
            ([("__name__", name), *labels], value, timestamp_ms)
            for name, labels, value in iter_samples(
                self.store,
                snapshots,
                resource_labels=self.config.resource_to_telemetry_conversion,
                namespace=self.config.namespace,
            )
        )
        return bytes(cramjam.snappy.compress_raw(encode_write_request(series)))

    def flush(self, deadline: float | None = None) -> bool:
        """Send one snapshot, retrying until success, a permanent error or ``deadline`` (monotonic).

        On the timer thread a shutdown interrupts the waits (shutdown sends its own final snapshot);
        during shutdown the waits run to the deadline.
        """
        interruptible = not self._stop.is_set()
        with self._flush_lock:
            payload = self.payload()
            if not payload:
                return True
            retry = self.config.retry_on_failure
            limit = time.monotonic() + retry.max_elapsed_time if retry.max_elapsed_time else float("inf")
            if deadline is not None:
                limit = min(limit, deadline)
            next_delay = backoff_delays(retry, self._rng)
            while True:
                try:
                    self._send(payload)
                    self.sent_requests += 1
                    return True
                except PermanentExportError as exc:
                    self._failed(str(exc))
                    return False
                except RetryableExportError as exc:
                    delay = max(next_delay(), exc.retry_after_s or 0.0)
                    if not retry.enabled or time.monotonic() + delay > limit:
                        self._failed(str(exc))
                        return False
                    if interruptible:
                        if self._stop.wait(delay):
                            return False
                    else:
                        time.sleep(delay)

    def _failed(self, reason: str) -> None:
        self.failed_requests += 1
        event(
            self.settings.logger,
            logging.WARNING,
            "remote write failed",
            exporter=str(self.settings.id),
            endpoint=self.config.endpoint,
            error=reason,
        )

    def _send(self, payload: bytes) -> None:
        headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
            "User-Agent": "otel-llm-collector",
            **self.config.headers,
        }
        request = urllib.request.Request(self.config.endpoint, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()[:200].decode("utf-8", "replace").strip()
            reason = f"HTTP {exc.code}: {body}"
            if exc.code in _RETRYABLE_STATUS:
                retry_after = exc.headers.get("Retry-After", "")
                raise RetryableExportError(
                    reason, float(retry_after) if retry_after.isdigit() else None
                ) from None
            raise PermanentExportError(reason) from None
        except (urllib.error.URLError, OSError) as exc:
            raise RetryableExportError(f"cannot reach {self.config.endpoint}: {exc}") from None

    def shutdown(self, timeout_s: float) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout_s)
        self.flush(deadline=time.monotonic() + max(0.1, timeout_s))


def _create(
    config: PrometheusRemoteWriteExporterConfig, settings: CreateSettings
) -> PrometheusRemoteWriteExporter:
    return PrometheusRemoteWriteExporter(config, settings)


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type_name="prometheusremotewrite",
    config_type=PrometheusRemoteWriteExporterConfig,
    create=_create,
    signals=frozenset({Signal.TRACES, Signal.METRICS}),
    description="Prometheus remote write 1.0 (snappy protobuf) of the derived GenAI metrics.",
)
