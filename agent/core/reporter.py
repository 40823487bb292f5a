"""The reporting loop of a device, without its I/O: one for the CPython and the MCU agent.

Both agents run the same loop; only the I/O around it differs (asyncio, SQLite and aiomqtt
in ``agent/runtime.py`` + ``agent/mqtt.py``; a blocking loop, the flash ring and a small
MQTT client in ``agent/micropython/mcu_agent.py``). :class:`Reporter` makes every decision
of that loop:

- reporting: a probe that fails gives one ``fault_start`` event (``probe.<name>``) and one
  ``fault_end`` when it reads again; the readings of a pass, by message kind, give the
  heartbeat when due and telemetry by kind when the reporting policy says so
  (:func:`agent.core.reporting.due_messages`); the birth and the Last Will of a session;
- delivery: the store's oldest messages become publishes, single or ``batch``
  (:func:`agent.core.backlog.plan_sends`); once the broker acknowledges them the store
  keeps them in flight until a delivery receipt covers them (or, without receipts,
  forgets them); a receipt clears what it covers; a new connection sends every
  unreceipted message again.

The store is the runtime's durable queue (``agent.queue.DurableQueue`` on SQLite,
``agent.core.outbox.RingOutbox`` on flash), with the methods ``mark_sent(keys, now)``,
``ack(keys)``, ``unsend_all()`` and ``receipted(boot_id, ranges)``; ``now`` is in the
store's own clock (seconds for SQLite, milliseconds for the ring).

Portable: runs unchanged on MicroPython (no dataclasses, no typing at run time).
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

    from agent.core.policy import ReportingPolicy

import json

from agent.core import receipts as receipt_logic
from agent.core.backlog import batch_payload, plan_sends
from agent.core.reporting import birth_fields, due_messages
from protocols import payloads, topics


class Reporter:
    """One device's reporting and delivery decisions.

    Args:
        device: the device id.
        policy: its reporting policy.
        store: its durable queue (see the module docstring).
        root: the topic root.
        receipts: keep sent messages until a delivery receipt (False: until the PUBACK).
        batch_threshold, batch_max_items, batch_max_bytes: when and how to batch a backlog.
    """

    def __init__(
        self,
        device: str,
        policy: "ReportingPolicy",
        store: "Any",
        root: str = topics.ROOT,
        receipts: bool = True,
        batch_threshold: int = 50,
        batch_max_items: int = 100,
        batch_max_bytes: int = 204800,
    ) -> None:
        self.device = device
        self.policy = policy
        self.store = store
        self.root = root
        self.receipts = receipts
        self.batch_threshold = batch_threshold
        self.batch_max_items = batch_max_items
        self.batch_max_bytes = batch_max_bytes
        self.state_topic = topics.state_topic(device, root)
        self.command_topic = topics.command_topic(device, root)
        self.receipt_topic = topics.receipt_topic(device, root)
        self.batch_topic = topics.batch_topic(device, root)
        self.faulted = {}  # type: dict[str, str]
        self.receipts_received = 0
        self.receipts_invalid = 0

    # -- reporting -----------------------------------------------------------------------
    @property
    def probe_faults(self) -> int:
        """How many probes are failing now (the heartbeat's ``probe_faults``)."""
        return len(self.faulted)

    def probe_failed(self, name: str, reason: str) -> "dict[str, Any] | None":
        """A probe could not read: the ``fault_start`` event's fields the first time, else None."""
        if name in self.faulted:
            return None
        self.faulted[name] = reason
        return {"event": "fault_start", "code": "probe." + name, "detail": reason[:512]}

    def probe_read(self, name: str) -> "dict[str, Any] | None":
        """A probe read: the ``fault_end`` event's fields if it was failing, else None."""
        if name not in self.faulted:
            return None
        del self.faulted[name]
        return {"event": "fault_end", "code": "probe." + name}

    def due(
        self,
        by_kind: "dict[str, dict[str, Any]]",
        now_s: float,
        force: bool,
        queue_depth: int,
        queue_dropped: int,
    ) -> "list[tuple[str, dict[str, Any]]]":
        """The ``(kind, fields)`` to queue after a pass (heartbeat, telemetry by kind)."""
        return due_messages(self.policy, by_kind, now_s, force, queue_depth, queue_dropped, self.probe_faults)

    def birth(
        self, bdseq: int, device_kind: str, agent_version: str, platform: "str | None"
    ) -> "dict[str, Any]":
        """The fields of this session's ``birth``."""
        return birth_fields(bdseq, device_kind, agent_version, self.policy.heartbeat_s, platform)

    def will(self, ts_ms: int, clock_is_ok: bool, bdseq: int, reason: str = "lwt") -> bytes:
        """The encoded ``death`` of this session (the Last Will; ``clean`` on a stop)."""
        return payloads.encode(payloads.death(self.device, ts_ms, clock_is_ok, bdseq, reason))

    # -- delivery ------------------------------------------------------------------------
    def connected(self) -> None:
        """A new connection: what the last one sent may be lost, send it all again."""
        if self.receipts:
            self.store.unsend_all()

    def publications(
        self, rows: "list[Any]", backlog: int, window: int
    ) -> "list[tuple[list[Any], str | None, bytes | None]]":
        """The next publishes, oldest first: ``(keys, topic, payload)``.

        Args:
            rows: ``(key, topic, kind, payload)`` of the oldest unsent messages, in order;
                ``topic`` and ``kind`` may be None (read from the payload). An empty
                payload is a torn record: it is not sent, its key goes with its group.
            backlog: messages queued in all.
            window: most publishes to return.

        Returns:
            Per publish the store keys it carries, its topic and payload (both None when
            every message of the group was torn: nothing to send, the keys are done).
        """
        plan = []
        parsed = []  # type: list[Any]
        for i, row in enumerate(rows):
            topic, kind, data = row[1], row[2], row[3]
            if data and (topic is None or kind is None):
                try:
                    msg = json.loads(data)
                    kind = msg["kind"]
                    topic = topics.topic_for(msg, self.root)
                except (ValueError, KeyError, TypeError):
                    data = b""  # unreadable: like a torn record, never sent
            if not data:
                kind = "torn"
            parsed.append((topic, kind, data))
            plan.append((i, kind, len(data)))
        groups = plan_sends(plan, backlog, self.batch_threshold, self.batch_max_items, self.batch_max_bytes)
        out = []  # type: list[tuple[list[Any], str | None, bytes | None]]
        for group in groups[:window]:
            keys = [rows[i][0] for i in group]
            items = [parsed[i] for i in group if parsed[i][1] != "torn"]
            if not items:
                out.append((keys, None, None))
            elif len(items) == 1:
                out.append((keys, items[0][0], items[0][2]))
            else:
                out.append((keys, self.batch_topic, batch_payload(self.device, [m[2] for m in items])))
        return out

    def published(self, keys: "list[Any]", now: "Any") -> None:
        """The broker acknowledged the publishes carrying ``keys``."""
        if not keys:
            return
        if self.receipts:
            self.store.mark_sent(keys, now)
        else:
            self.store.ack(keys)

    def on_receipt(self, data: "bytes | str") -> int:
        """Apply a delivery receipt; return how many messages it cleared from the store.

        Raises:
            InvalidPayload: not a valid receipt for this device (counted in
                ``receipts_invalid``; the caller logs it).
        """
        try:
            boot_id, ranges = receipt_logic.parse(data, self.device)
        except ValueError:
            self.receipts_invalid += 1
            raise
        self.receipts_received += 1
        return int(self.store.receipted(boot_id, ranges))
