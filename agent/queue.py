"""The durable store-and-forward queue (SQLite, WAL, synchronous=FULL).

Every message is committed here before it is published and deleted only after the
broker's PUBACK, so a power cut at any instant loses nothing that was accepted and
replays at most the messages whose acknowledgement was in flight (QoS-1 duplicates).
The per-boot ``seq`` and the MQTT session counter ``bdseq`` live in the same database,
allocated in the same transaction as the message that uses them, so ``seq`` continues
across agent restarts within a boot and restarts at 0 for a new ``boot_id``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from agent.core.backlog import overflow

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS seen_commands (id TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""
_SEEN_COMMANDS_KEPT = 1000


class QueuedMessage(NamedTuple):
    """One stored message."""

    id: int
    topic: str
    kind: str
    payload: bytes


class DurableQueue:
    """The agent's outbox and counters in one SQLite file.

    Args:
        path: the database file (its directory is created).
        boot_id: this boot's id; a different stored one resets ``seq`` to 0.
        max_messages: cap; appending beyond it drops the oldest messages and counts them.
    """

    def __init__(self, path: str | Path, boot_id: str, max_messages: int = 100_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        with self._transaction():
            if self._meta("boot_id") != boot_id:
                self._set_meta("boot_id", boot_id)
                self._set_meta("next_seq", 0)
        self.boot_id = boot_id
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        """Close the database (everything committed is already on disk)."""
        with self._lock:
            self._db.close()

    # -- helpers ------------------------------------------------------------------------
    def _transaction(self) -> _Tx:
        return _Tx(self._db, self._lock)

    def _meta(self, key: str, default: int | str | None = None) -> int | str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def _set_meta(self, key: str, value: int | str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _int_meta(self, key: str) -> int:
        value = self._meta(key, 0)
        return int(value) if value is not None else 0

    # -- counters -----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Messages waiting for a PUBACK."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Messages dropped by the cap since the queue was created."""
        with self._lock:
            return self._int_meta("dropped")

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next message will get."""
        with self._lock:
            return self._int_meta("next_seq")

    def next_bdseq(self) -> int:
        """Bump and return the MQTT session counter (one per connect attempt)."""
        with self._transaction():
            bdseq = self._int_meta("bdseq") + 1
            self._set_meta("bdseq", bdseq)
        return bdseq

    def take_seq(self) -> int:
        """Allocate one ``seq`` for a message that is published without queueing (birth)."""
        with self._transaction():
            seq = self._int_meta("next_seq")
            self._set_meta("next_seq", seq + 1)
        return seq

    # -- messages -----------------------------------------------------------------------
    def append(self, make: Callable[[int], tuple[str, str, bytes]]) -> int:
        """Store one message built with the next ``seq``, in one transaction.

        Args:
            make: called with the ``seq`` to use; returns ``(topic, kind, payload)``. If it
                raises, nothing is stored and the ``seq`` is not used.

        Returns:
            The ``seq`` the message got.
        """
        with self._transaction():
            seq = self._int_meta("next_seq")
            topic, kind, payload = make(seq)
            self._db.execute(
                "INSERT INTO outbox (topic, kind, payload) VALUES (?, ?, ?)", (topic, kind, payload)
            )
            self._set_meta("next_seq", seq + 1)
            self._depth += 1
            excess = overflow(self._depth, self.max_messages)
            if excess:
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
                )
                self._set_meta("dropped", self._int_meta("dropped") + excess)
                self._depth -= excess
        if excess:
            log.warning("queue full (%d messages): dropped the %d oldest", self.max_messages, excess)
        return seq

    def peek(self, limit: int) -> list[QueuedMessage]:
        """The ``limit`` oldest messages, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, kind, payload FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [QueuedMessage(int(r[0]), str(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    def ack(self, ids: Iterable[int]) -> None:
        """Delete messages the broker acknowledged."""
        ids = list(ids)
        if not ids:
            return
        with self._transaction():
            cur = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            self._depth -= max(0, cur.rowcount)

    # -- command de-duplication ---------------------------------------------------------
    def command_seen(self, command_id: str) -> bool:
        """Record a command id; True if it was already recorded (a QoS-1 redelivery)."""
        with self._transaction():
            if self._db.execute("SELECT 1 FROM seen_commands WHERE id = ?", (command_id,)).fetchone():
                return True
            n = self._int_meta("commands_seen") + 1
            self._set_meta("commands_seen", n)
            self._db.execute("INSERT INTO seen_commands (id, n) VALUES (?, ?)", (command_id, n))
            self._db.execute("DELETE FROM seen_commands WHERE n <= ?", (n - _SEEN_COMMANDS_KEPT,))
        return False


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) under the queue's lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._lock.release()
