"""systemd readiness and watchdog: the real agent process on a real notify socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sdnotify import ServiceNotifier
from backend.localservices import LocalMosquitto

AGENT = Path(sys.executable).parent / "tincoso-agent"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def _messages(sock: socket.socket, until: float, stop_at: str | None = None) -> list[str]:
    got: list[str] = []
    while time.monotonic() < until:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if stop_at is not None and any(stop_at in m for m in got):
            break
    return got


def test_agent_says_ready_feeds_the_watchdog_and_says_stopping(
    tmp_path: Path, mosquitto: LocalMosquitto, notify_socket: socket.socket
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[device]\nid = "vn-trangxa-loa-03"\nkind = "speaker_cluster"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nport = {mosquitto.port}\n[reporting]\npoll_s = 0.2\n[clock]\nsync_check = "none"\n'
        "[probes.system]\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"}
    agent = subprocess.Popen([str(AGENT), "--config", str(config)], env=env, stderr=subprocess.DEVNULL)
    try:
        first = _messages(notify_socket, time.monotonic() + 60, stop_at="READY=1")
        assert first, "no sd_notify message"
        assert first[-1].startswith("READY=1\nSTATUS=reporting as vn-trangxa-loa-03"), first
        pings = _messages(notify_socket, time.monotonic() + 3)
        assert pings.count("WATCHDOG=1") >= 2, pings
    finally:
        agent.send_signal(signal.SIGTERM)
        stopping = _messages(notify_socket, time.monotonic() + 30, stop_at="STOPPING=1")
        assert agent.wait(30) == 0
    assert "STOPPING=1" in stopping


async def test_watchdog_is_not_fed_while_the_poll_loop_is_stuck(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    polls = [1]
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"}
    notifier = ServiceNotifier(lambda: polls[0], env)
    task = asyncio.create_task(notifier.run("test"))
    # Polls progress for a while: fed.
    for _ in range(10):
        polls[0] += 1
        await asyncio.sleep(0.05)
    fed = notifier.pings
    assert fed >= 2
    # The loop hangs: at most the half interval in flight, then no more pings.
    await asyncio.sleep(0.6)
    stuck_at = notifier.pings
    await asyncio.sleep(0.6)
    assert notifier.pings == stuck_at
    task.cancel()


def test_outside_systemd_nothing_is_sent() -> None:
    assert ServiceNotifier(lambda: 1, {}).interval_s is None
