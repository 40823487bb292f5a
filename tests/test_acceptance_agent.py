"""The agent's side of the acceptance test: the ``reconnect`` command (agent/command_reconnect.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent import command_reconnect
from agent.commands import CommandDispatcher, CommandFailed, CommandHost
from agent.config import AgentConfig
from protocols import payloads
from protocols.errors import InvalidPayload

DEVICE = "vn-trangxa-loa-03"


class FakeSession:
    def __init__(self, connected: bool = True) -> None:
        self.connected = asyncio.Event()
        if connected:
            self.connected.set()
        self.bdseq = 4
        self.connects = 4
        self.drops: list[float] = []

    def drop(self) -> None:
        self.drops.append(asyncio.get_running_loop().time())


class Host(CommandHost):
    def __init__(self, session: FakeSession | None) -> None:
        self.config = AgentConfig(
            {"device": {"id": DEVICE, "kind": "speaker_cluster", "state_dir": "/nonexistent"}}
        )
        self.session = session
        self.results: list[dict[str, Any]] = []
        self.flushed = 0

    def enqueue_result(self, fields: dict[str, Any]) -> None:
        self.results.append(fields)

    async def wait_sent(self, timeout_s: float) -> bool:
        self.flushed += 1
        return True


def test_reconnect_is_a_protocol_command_with_a_bounded_delay() -> None:
    assert "reconnect" in payloads.COMMANDS
    payloads.command(DEVICE, "c1", "reconnect", {"after_s": 2}, 1)
    payloads.command(DEVICE, "c2", "reconnect", {}, 1)
    with pytest.raises(InvalidPayload, match="after_s"):
        payloads.command(DEVICE, "c3", "reconnect", {"after_s": 600}, 1)


async def test_reconnect_answers_first_then_drops_the_session_after_the_delay() -> None:
    session = FakeSession()
    host = Host(session)
    loop = asyncio.get_running_loop()
    measured, after = await command_reconnect.reconnect(host, {"after_s": 0.2})
    assert measured == {"after_s": 0.2, "bdseq": 4, "connects": 4}
    assert after is not None
    started = loop.time()
    await after()
    assert session.drops == []  # not yet: the result must reach the backend first
    await asyncio.sleep(0.4)
    assert host.flushed == 1
    assert len(session.drops) == 1
    assert session.drops[0] - started >= 0.19


async def test_reconnect_without_a_connected_session_is_refused() -> None:
    with pytest.raises(CommandFailed, match="no connected MQTT session"):
        await command_reconnect.reconnect(Host(None), {})
    with pytest.raises(CommandFailed, match="no connected MQTT session"):
        await command_reconnect.reconnect(Host(FakeSession(connected=False)), {"after_s": 0})


def test_drop_session_without_a_connection_does_nothing() -> None:
    from agent.mqtt import Session

    session = Session.__new__(Session)  # never connected
    session._client = None
    assert command_reconnect.drop_session(session) is False


async def test_the_agent_dispatcher_handles_reconnect() -> None:
    host = Host(FakeSession())
    dispatcher = CommandDispatcher(host, set().__contains__)
    data = payloads.encode(payloads.command(DEVICE, "c-rc", "reconnect", {"after_s": 0}, 1))
    await dispatcher.handle(data)
    [result] = host.results
    assert result["ok"], (
        "agent.commands does not run `reconnect`: add to CommandDispatcher._handlers "
        '"reconnect": functools.partial(command_reconnect.reconnect, host) -- got ' + json.dumps(result)
    )
    await asyncio.sleep(0.05)
    assert host.session is not None
    assert len(host.session.drops) == 1
