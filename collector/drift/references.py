"""Reference samples on disk: one ``.npz`` file per group and signal, written atomically.

A file holds the reference values (an n×d float32 matrix for embeddings, float64 numbers, or category
labels) and a small JSON header: format version, group labels, signal, embedder identity and when it
was saved. Loading never unpickles (``allow_pickle=False``). A file whose embedder identity differs
from the running embedder's is ignored, since vectors of two embedders are not comparable.

:func:`save_reference` builds reference files offline from OTLP/JSON trace files (one
``ExportTraceServiceRequest`` per line, as the Collector's file exporter writes them); it is what
``otel-llm drift save-reference`` runs, for ``reference::mode: file``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from collector.drift.features import SIGNAL_KINDS, Signal, SignalKind

if TYPE_CHECKING:
    from collector.drift.embedders import Embedder
    from collector.processors.drift import DriftProcessorConfig

__all__ = [
    "ReferenceFile",
    "ReferenceStore",
    "ReferenceValues",
    "read_trace_files",
    "save_reference",
    "save_reference_from_config",
]

_FORMAT = 1

ReferenceValues = npt.NDArray[np.float32] | npt.NDArray[np.float64] | npt.NDArray[np.str_]


@dataclass(frozen=True)
class ReferenceFile:
    """One loaded reference."""

    labels: dict[str, str]
    signal: Signal
    values: ReferenceValues
    embedder: str
    saved_at: float


def group_file_stem(labels: Mapping[str, str]) -> str:
    """A stable file name for a group: a hash of its sorted labels (labels may hold any characters)."""
    text = json.dumps(sorted(labels.items()), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class ReferenceStore:
    """Reads and writes reference files under one directory; safe from one thread at a time."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, labels: Mapping[str, str], signal: Signal) -> Path:
        return self.directory / f"{group_file_stem(labels)}.{signal.value}.npz"

    def save(self, labels: Mapping[str, str], signal: Signal, values: ReferenceValues, embedder: str) -> Path:
        """Write atomically (temporary file, then rename); raises ``OSError`` on I/O failure."""
        self.directory.mkdir(parents=True, exist_ok=True)
        header = {
            "format": _FORMAT,
            "labels": dict(labels),
            "signal": signal.value,
            "embedder": embedder if SIGNAL_KINDS[signal] is SignalKind.EMBEDDING else "",
            "saved_at": time.time(),
        }
        target = self.path(labels, signal)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.directory)
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, values=values, header=np.array(json.dumps(header)))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def load(self, labels: Mapping[str, str], signal: Signal, embedder: str) -> ReferenceFile | None:
        """The saved reference, or ``None`` when absent, unreadable, or from another embedder."""
        path = self.path(labels, signal)
        if not path.exists():
            return None
        loaded = read_reference(path)
        if loaded is None or loaded.labels != dict(labels) or loaded.signal is not signal:
            return None
        if SIGNAL_KINDS[signal] is SignalKind.EMBEDDING and loaded.embedder != embedder:
            return None
        return loaded


def read_reference(path: Path) -> ReferenceFile | None:
    """Parse one reference file; ``None`` when it is not a readable reference of this format."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            values = data["values"]
        if header.get("format") != _FORMAT:
            return None
        return ReferenceFile(
            labels={str(k): str(v) for k, v in header["labels"].items()},
            signal=Signal(header["signal"]),
            values=values,
            embedder=str(header.get("embedder", "")),
            saved_at=float(header.get("saved_at", 0.0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_trace_files(paths: Sequence[str | Path]) -> Iterator[object]:
    """``ExportTraceServiceRequest`` messages from OTLP/JSON lines files; raises ``ValueError`` with the
    file and line of a line that is not one."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                request = ExportTraceServiceRequest()
                try:
                    json_format.Parse(line, request, ignore_unknown_fields=True)
                except json_format.ParseError as exc:
                    raise ValueError(
                        f"{path}:{number}: expected an OTLP/JSON trace export request: {exc}"
                    ) from exc
                yield request


def save_reference(
    trace_files: Sequence[str | Path],
    config: DriftProcessorConfig,
    directory: str | Path | None = None,
    embedder: Embedder | None = None,
) -> list[Path]:
    """Build references per group from recorded traces and write them; return the files written.

    Uses the processor's own grouping, signals, reservoir size and embedder, so the files match what
    a running ``drift`` processor with ``config`` expects. ``directory`` defaults to
    ``config.reference.directory``. Groups and signals with fewer than 10 values per reference fold
    are left out. Raises ``ValueError`` (bad input or no directory) or ``OSError``.
    """
    from collector.drift.embedders import build_embedder
    from collector.drift.monitor import DriftMonitor

    target = directory if directory is not None else config.reference.directory
    if target is None:
        raise ValueError("no directory: pass one or set reference::directory in the drift processor config")
    collecting = config.model_copy(
        update={"reference": config.reference.model_copy(update={"mode": "first_n", "directory": None})}
    )
    chosen = embedder or build_embedder(config.embedding.embedder)
    monitor = DriftMonitor(collecting, embedder_identity=chosen.identity, max_groups_override=1_000_000)
    pending: list[tuple[tuple[str, ...], Signal, str]] = []
    for request in read_trace_files(trace_files):
        from collector.genai.spans import extract_genai_spans

        for span in extract_genai_spans(request):  # type: ignore[arg-type]
            _, texts, _ = monitor.observe_span(span, now=0.0)
            pending.extend(texts)
    batch = config.embedding.batch_size
    for start in range(0, len(pending), batch):
        chunk = pending[start : start + batch]
        vectors = chosen.embed([text for _, _, text in chunk])
        for (key, signal, _), vector in zip(chunk, vectors, strict=True):
            monitor.observe_vector(key, signal, vector, now=0.0)
    store = ReferenceStore(target)
    written: list[Path] = []
    for labels, signal, values in monitor.references(include_partial=True):
        written.append(store.save(labels, signal, values, chosen.identity))
    return written


def save_reference_from_config(
    config_file: str | Path,
    trace_files: Sequence[str | Path],
    *,
    processor: str = "drift",
    directory: str | Path | None = None,
) -> list[Path]:
    """``otel-llm drift save-reference``: :func:`save_reference` with the config of processor id
    ``processor`` in a collector config file. Raises :class:`~collector.errors.ConfigError` for an
    invalid file, ``ValueError`` for a missing or non-``drift`` processor or bad traces, ``OSError``."""
    from collector.component import Kind
    from collector.configuration import load_config
    from collector.processors.drift import DriftProcessorConfig

    collector_config = load_config(config_file)
    spec = collector_config.components.get(Kind.PROCESSOR, {}).get(processor)
    if spec is None:
        raise ValueError(f"{config_file}: processors::{processor} is not defined")
    if not isinstance(spec.config, DriftProcessorConfig):
        raise ValueError(
            f"{config_file}: processors::{processor} is a {spec.id.type} processor, expected drift"
        )
    return save_reference(trace_files, spec.config, directory)
