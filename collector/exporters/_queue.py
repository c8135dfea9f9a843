"""Sending queues of the exporter helper: bounded in memory, or persistent in SQLite.

Both hold serialised export requests (:class:`Entry`), count their size in requests, and never block
a producer: :meth:`put` returns False when full, and the receiver turns that into a retryable refusal.

The persistent queue appends each request to a SQLite file in WAL mode and commits before
:meth:`put` returns, so once the receiver has acknowledged data it survives a crash or ``kill -9`` of
the process (``synchronous=NORMAL``: durable against a process crash, though the last commits could be
lost if the machine itself loses power). A request leaves the file only after :meth:`done`, i.e. after
it was sent or dropped for good; requests that were in flight during a crash are sent again on the
next start (at-least-once: the backend may see them twice).
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from collector.component import Signal
from collector.errors import ComponentError

__all__ = ["Entry", "MemoryQueue", "SqliteQueue"]


@dataclass(slots=True)
class Entry:
    """One export request waiting to be sent."""

    signal: Signal
    payload: bytes
    items: int
    key: int = 0  # SQLite rowid; 0 in memory


class _BaseQueue:
    def __init__(self, capacity: int, on_size: Callable[[Signal, int], None]) -> None:
        self.capacity = capacity
        self._on_size = on_size
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._sizes: dict[Signal, int] = dict.fromkeys(Signal, 0)
        self._total = 0
        self._woken = False

    def _grow(self, signal: Signal, delta: int) -> None:
        # Called with the lock held.
        self._sizes[signal] += delta
        self._total += delta
        self._on_size(signal, self._sizes[signal])

    def __len__(self) -> int:
        with self._lock:
            return self._total

    def wake_all(self) -> None:
        """Make every waiting and future :meth:`get` return at once when nothing waits (shutdown)."""
        with self._lock:
            self._woken = True
            self._ready.notify_all()


class MemoryQueue(_BaseQueue):
    """A bounded FIFO of entries in memory; thread-safe."""

    def __init__(self, capacity: int, on_size: Callable[[Signal, int], None]) -> None:
        super().__init__(capacity, on_size)
        self._entries: deque[Entry] = deque()

    def open(self) -> None:
        with self._lock:
            self._woken = False

    def put(self, entry: Entry) -> bool:
        with self._lock:
            if self._total >= self.capacity:
                return False
            self._entries.append(entry)
            self._grow(entry.signal, 1)
            self._ready.notify()
            return True

    def get(self, timeout_s: float) -> Entry | None:
        """The oldest waiting entry, or None after ``timeout_s``; it counts until :meth:`done`."""
        with self._lock:
            self._ready.wait_for(lambda: bool(self._entries) or self._woken, timeout_s)
            return self._entries.popleft() if self._entries else None

    def done(self, entry: Entry) -> None:
        """The entry was sent or dropped for good."""
        with self._lock:
            self._grow(entry.signal, -1)

    def give_back(self, entry: Entry) -> None:
        """An entry that was taken but not finished (shutdown): in memory it is simply lost by the caller."""
        self.done(entry)

    def drain(self) -> list[Entry]:
        """Remove and return every waiting entry."""
        with self._lock:
            entries = list(self._entries)
            self._entries.clear()
            for entry in entries:
                self._grow(entry.signal, -1)
            return entries

    def close(self) -> None:
        return

    @property
    def persistent(self) -> bool:
        return False


class SqliteQueue(_BaseQueue):
    """A bounded FIFO persisted in one SQLite file; thread-safe (one connection behind the lock)."""

    def __init__(self, path: Path, capacity: int, on_size: Callable[[Signal, int], None]) -> None:
        super().__init__(capacity, on_size)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._waiting: deque[tuple[int, Signal, int]] = deque()  # (rowid, signal, items), payload on disk

    def open(self) -> int:
        """Open (or create) the file and load the index of what it holds; return that count."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One process per file: two would both send every row. The lock goes with the process, so a
        # killed collector never leaves it behind.
        lock = open(self.path.with_name(self.path.name + ".lock"), "a+b")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ComponentError(
                f"persistent queue {self.path} is in use by another process; give each collector "
                "(and each worker) its own storage"
            ) from None
        self._lock_file = lock
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS queue ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, signal TEXT NOT NULL, items INTEGER NOT NULL,"
            " payload BLOB NOT NULL)"
        )
        with self._lock:
            self._db = db
            self._woken = False
            for rowid, signal, items in db.execute("SELECT id, signal, items FROM queue ORDER BY id"):
                entry_signal = Signal(signal)
                self._waiting.append((rowid, entry_signal, items))
                self._grow(entry_signal, 1)
            return len(self._waiting)

    def put(self, entry: Entry) -> bool:
        with self._lock:
            if self._db is None or self._total >= self.capacity:
                return False
            cursor = self._db.execute(
                "INSERT INTO queue (signal, items, payload) VALUES (?, ?, ?)",
                (entry.signal.value, entry.items, entry.payload),
            )
            rowid = cursor.lastrowid
            assert rowid is not None
            self._waiting.append((rowid, entry.signal, entry.items))
            self._grow(entry.signal, 1)
            self._ready.notify()
            return True

    def get(self, timeout_s: float) -> Entry | None:
        with self._lock:
            self._ready.wait_for(lambda: bool(self._waiting) or self._woken, timeout_s)
            if not self._waiting or self._db is None:
                return None
            rowid, signal, items = self._waiting.popleft()
            row = self._db.execute("SELECT payload FROM queue WHERE id = ?", (rowid,)).fetchone()
            return Entry(signal, bytes(row[0]) if row else b"", items, rowid)

    def done(self, entry: Entry) -> None:
        with self._lock:
            if self._db is not None:
                self._db.execute("DELETE FROM queue WHERE id = ?", (entry.key,))
            self._grow(entry.signal, -1)

    def give_back(self, entry: Entry) -> None:
        """An entry taken but not finished: it stays in the file and is sent after the next start."""
        with self._lock:
            self._grow(entry.signal, -1)

    def drain(self) -> list[Entry]:
        """Forget the waiting index (the rows stay on disk for the next start); return nothing to drop."""
        with self._lock:
            for _rowid, signal, _items in self._waiting:
                self._grow(signal, -1)
            self._waiting.clear()
        return []

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            lock, self._lock_file = self._lock_file, None
        if db is not None:
            db.close()
        if lock is not None:
            lock.close()  # releases the flock

    @property
    def persistent(self) -> bool:
        return True
