"""The ``reconnect`` command: drop the MQTT session on purpose and let it come back.

A vendor's acceptance test proves that a device recovers from a lost connection without
losing data. The agent answers first (the result must reach the backend), waits
``after_s`` and then disconnects cleanly: the broker discards the Last Will, so nobody is
alerted, and the session's normal reconnect path (backoff, new ``bdseq``, retained
``birth``, queue replay) runs exactly as after a real outage.

Wired into ``agent.commands.CommandDispatcher`` as
``"reconnect": functools.partial(command_reconnect.reconnect, host)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.commands import CommandHost

log = logging.getLogger(__name__)

DEFAULT_AFTER_S = 1.0
RESULT_FLUSH_S = 5.0

# Pending drops: a task only weakly referenced by the loop could be collected mid-sleep.
_pending: set[asyncio.Task[None]] = set()


async def reconnect(
    host: CommandHost, args: dict[str, Any]
) -> tuple[dict[str, Any], Callable[[], Awaitable[None]] | None]:
    """Handle ``reconnect``: report the session now in force and schedule the drop.

    Args:
        host: the running agent (its ``session`` attribute is the MQTT session).
        args: validated command arguments (``after_s``, optional, 0-60).

    Returns:
        ``({"after_s", "bdseq", "connects"}, action)``; the action runs once the result
        is queued and starts the delayed drop in the background.

    Raises:
        agent.commands.CommandFailed: the agent has no connected MQTT session.
    """
    from agent.commands import CommandFailed  # agent.commands imports this module

    session = getattr(host, "session", None)
    connected = getattr(session, "connected", None)
    if session is None or connected is None or not connected.is_set():
        raise CommandFailed("reconnect refused: no connected MQTT session")
    after_s = float(args.get("after_s", DEFAULT_AFTER_S))
    measured = {
        "after_s": after_s,
        "bdseq": getattr(session, "bdseq", None),
        "connects": getattr(session, "connects", None),
    }

    async def start_drop() -> None:
        # Not awaited here: the command lock would be held through after_s.
        task = asyncio.create_task(_drop_later(host, session, after_s))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    return measured, start_drop


async def _drop_later(host: CommandHost, session: Any, after_s: float) -> None:
    await host.wait_sent(RESULT_FLUSH_S)
    await asyncio.sleep(after_s)
    if drop_session(session):
        log.warning("MQTT session dropped on remote command (reconnect test)")


def drop_session(session: Any) -> bool:
    """Disconnect the session's current connection (`agent.mqtt.Session.drop`)."""
    dropped = bool(session.drop())
    if not dropped:
        log.warning("reconnect: the MQTT session is not connected, nothing to drop")
    return dropped
