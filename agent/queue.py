"""The durable store-and-forward queue (SQLite, WAL, synchronous=FULL).

Every message is committed here before it is published and deleted only once the
backend's delivery receipt covers its ``(boot_id, seq)`` (`receipted`): the broker's
PUBACK only marks it sent (`mark_sent`), because the broker is not a durable store. So a
power cut or a broker crash at any instant loses nothing that was accepted, and replays
at most messages the backend may already hold (it stores a replay on the same point).
Without receipts (``[mqtt] receipts = false``) `ack` deletes on PUBACK, as before.
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

from agent.core import receipts
from agent.core.backlog import overflow
from protocols.payloads import seq_ranges

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
# Added for delivery receipts; a queue file from before gets them (NULL: delete on PUBACK).
_RECEIPT_COLUMNS = (("boot_id", "TEXT"), ("seq", "INTEGER"), ("sent_at", "REAL"))
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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        for name, sql_type in _RECEIPT_COLUMNS:
            if name not in columns:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {sql_type}")
        self._db.execute("CREATE INDEX IF NOT EXISTS outbox_boot_seq ON outbox (boot_id, seq)")
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
        """Messages not yet receipted (or, without receipts, not yet acknowledged)."""
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
                "INSERT INTO outbox (topic, kind, payload, boot_id, seq) VALUES (?, ?, ?, ?, ?)",
                (topic, kind, payload, self.boot_id, seq),
            )
            self._set_meta("next_seq", seq + 1)
            self._depth += 1
            excess = overflow(self._depth, self.max_messages)
            gone: list[tuple[str | None, int | None, float | None]] = []
            if excess:
                gone = self._db.execute(
                    "SELECT boot_id, seq, sent_at FROM outbox ORDER BY id LIMIT ?", (excess,)
                ).fetchall()
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
                )
                self._set_meta("dropped", self._int_meta("dropped") + excess)
                self._depth -= excess
        if excess:
            log.warning(
                "queue full (%d messages): dropped the %d oldest: %s",
                self.max_messages,
                excess,
                _describe_dropped(gone),
            )
        return seq

    def peek(self, limit: int) -> list[QueuedMessage]:
        """The ``limit`` oldest messages, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, kind, payload FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [QueuedMessage(int(r[0]), str(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    def peek_due(self, limit: int, now: float, timeout_s: float) -> list[QueuedMessage]:
        """The ``limit`` oldest messages to send now: never sent, or sent ``timeout_s`` ago
        or more without a receipt."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, kind, payload, sent_at FROM outbox"
                " WHERE sent_at IS NULL OR sent_at <= ? ORDER BY id LIMIT ?",
                (now - timeout_s, limit),
            ).fetchall()
        keys = receipts.due([(r[0], r[4]) for r in rows], int(now * 1000), int(timeout_s * 1000))
        wanted = set(keys)
        return [QueuedMessage(int(r[0]), str(r[1]), str(r[2]), bytes(r[3])) for r in rows if r[0] in wanted]

    def mark_sent(self, ids: Iterable[int], now: float) -> None:
        """The broker acknowledged these: keep them until a receipt (those without a
        ``seq``, queued before receipts existed, are deleted)."""
        ids = list(ids)
        if not ids:
            return
        with self._transaction():
            self._db.executemany("UPDATE outbox SET sent_at = ? WHERE id = ?", [(now, i) for i in ids])
            cur = self._db.executemany("DELETE FROM outbox WHERE id = ? AND seq IS NULL", [(i,) for i in ids])
            self._depth -= max(0, cur.rowcount)

    def unsend_all(self) -> None:
        """Send every unreceipted message again (after a reconnect)."""
        with self._transaction():
            self._db.execute("UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL")

    @property
    def unsent(self) -> int:
        """Messages not yet acknowledged by the broker (never sent, or sent again)."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        return int(row[0])

    @property
    def in_flight(self) -> int:
        """Messages sent and acknowledged by the broker, waiting for their receipt."""
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[0]
            )

    def receipted(self, boot_id: str, ranges: list[list[int]]) -> int:
        """Delete the messages of ``boot_id`` whose seq a receipt covers; return how many."""
        if not ranges:
            return 0
        with self._transaction():
            rows = self._db.execute(
                "SELECT id, boot_id, seq FROM outbox WHERE boot_id = ? AND seq BETWEEN ? AND ?",
                (boot_id, ranges[0][0], ranges[-1][1]),
            ).fetchall()
            ids = receipts.cleared([(r[0], r[1], r[2]) for r in rows], boot_id, ranges)
            cur = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            removed = max(0, cur.rowcount)
            self._depth -= removed
        return removed

    def ack(self, ids: Iterable[int]) -> None:
        """Delete messages the broker acknowledged (without receipts)."""
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


def _describe_dropped(rows: list[tuple[str | None, int | None, float | None]]) -> str:
    """Which messages a full queue dropped, for the log: ``seq 4-17 of boot <id>`` per boot
    (an audit compares it with what the backend stored), and how many of them the broker had
    acknowledged (their receipt not yet back: stored, or on their way to storage)."""
    by_boot: dict[str, list[int]] = {}
    acked = 0
    for boot_id, seq, sent_at in rows:
        if seq is not None:
            by_boot.setdefault(boot_id or "?", []).append(seq)
        acked += sent_at is not None
    parts = []
    for boot, seqs in by_boot.items():
        spans = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in seq_ranges(seqs))
        parts.append(f"seq {spans} of boot {boot}")
    return f"{'; '.join(parts) or 'no numbered message'} ({acked} of them acknowledged by the broker)"
