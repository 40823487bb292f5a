"""Many simulated agents in one process, each with its own MQTT connection and Last Will.

``python -m bench.fleetsim --port P --devices N [--prefix P] [--heartbeat-s 30] [--snapshot-s 300]``

Each simulated device behaves like the agent on the wire: MQTT 3.1.1, a persistent session
under its device id, a retained Last Will ``death`` and a retained ``birth`` with ``bdseq``,
heartbeats and audio snapshots when `agent.core.policy.ReportingPolicy` says they are due
(default intervals and jitter), every message built by `agent.core.messages.MessageBuilder`
and sent at QoS 1. The MQTT client is a few dozen lines over asyncio streams because
10,000 paho or aiomqtt clients in one process would measure those libraries, not the
backend.

Commands on stdin, one per line; answers are JSON lines on stdout:

* ``stats``: ``{"connected", "sent", "acked"}``;
* ``kill N``: drop the TCP connections of the last N devices without DISCONNECT (as a
  killed agent or a power cut seen by the kernel), so the broker publishes their wills;
  answers ``{"killed": [ids]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import struct
import sys
import time
from pathlib import Path

from agent.core.policy import ReportingPolicy
from bench.messages import SimDevice, audio, heartbeat


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def connect_packet(
    client_id: str, keepalive: int, will_topic: str, will: bytes, password: str | None = None
) -> bytes:
    """CONNECT: MQTT 3.1.1, persistent session, retained QoS 1 will; with ``password``, the
    device id as user name (the deployed broker's per-device passwords)."""
    flags = 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain; clean session off
    if password is not None:
        flags |= 0x80 | 0x40
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body += _str(client_id) + _str(will_topic) + _str(will)
    if password is not None:
        body += _str(client_id) + _str(password)
    return b"\x10" + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int, retain: bool = False) -> bytes:
    """PUBLISH at QoS 1."""
    body = _str(topic) + struct.pack("!H", packet_id) + payload
    return bytes([0x32 | (1 if retain else 0)]) + _length(len(body)) + body


class Counters:
    """What the whole simulated fleet did."""

    def __init__(self) -> None:
        self.connected = 0
        self.sent = 0
        self.acked = 0
        self.bytes = 0


class Agent:
    """One simulated device: its connection, envelope and reporting policy."""

    def __init__(self, device: str, args: argparse.Namespace, counters: Counters) -> None:
        self.sim = SimDevice(device)
        self.args = args
        self.counters = counters
        self.policy = ReportingPolicy(device, args.heartbeat_s, args.snapshot_s, now_s=time.monotonic())
        self.writer: asyncio.StreamWriter | None = None
        self.packet_id = 0
        self.last_sent = 0.0
        self.tasks: list[asyncio.Task[None]] = []

    def _send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        assert self.writer is not None
        self.packet_id = self.packet_id % 65535 + 1
        packet = publish_packet(topic, payload, self.packet_id, retain)
        self.writer.write(packet)
        self.counters.sent += 1
        self.counters.bytes += len(packet)
        self.last_sent = time.monotonic()

    async def connect(self) -> None:
        tls = self.args.tls_context
        reader, writer = await asyncio.open_connection(
            self.args.host, self.args.port, ssl=tls, server_hostname=self.args.host if tls else None
        )
        will_topic, will = self.sim.death(1)
        password = self.args.password_of.get(self.sim.device) if self.args.password_of else None
        writer.write(connect_packet(self.sim.device, self.args.keepalive_s, will_topic, will, password))
        header = await reader.readexactly(4)
        if header[0] != 0x20 or header[3] != 0:
            raise RuntimeError(f"{self.sim.device}: CONNACK refused ({header!r})")
        self.writer = writer
        self.counters.connected += 1
        self._send(*self.sim.birth(1, self.args.heartbeat_s), retain=True)
        self.tasks = [asyncio.create_task(self._read(reader)), asyncio.create_task(self._report())]

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await reader.readexactly(2)
                if head[0] >> 4 == 4:  # PUBACK
                    await reader.readexactly(head[1])
                    self.counters.acked += 1
                elif head[1]:
                    await reader.readexactly(head[1])
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def _report(self) -> None:
        uptime0 = 86400.0 * (hash(self.sim.device) % 30)
        while True:
            now = time.monotonic()
            if self.policy.heartbeat_due(now):
                self._send(*self.sim.message("heartbeat", heartbeat(uptime0 + now)))
                self.policy.heartbeat_sent(now)
            fields = audio(playing=False)
            if self.policy.telemetry_due("audio", fields, now):
                self._send(*self.sim.message("audio", fields))
                self.policy.telemetry_sent("audio", fields, now)
            if now - self.last_sent >= self.args.keepalive_s and self.writer is not None:
                self.writer.write(b"\xc0\x00")  # PINGREQ
                self.last_sent = now
            await asyncio.sleep(max(0.05, min(self.policy.next_heartbeat_in(now), 5.0)))

    def kill(self) -> None:
        """Drop the connection with a RST, no DISCONNECT: the broker sends the will."""
        for task in self.tasks:
            task.cancel()
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None


async def main_async(args: argparse.Namespace) -> None:
    counters = Counters()
    agents = [Agent(f"{args.prefix}-{n:05d}", args, counters) for n in range(args.devices)]
    gate = asyncio.Semaphore(args.connect_parallel)

    async def start(agent: Agent) -> None:
        async with gate:
            await agent.connect()

    started = time.monotonic()
    await asyncio.gather(*(start(a) for a in agents))
    emit({"ready": len(agents), "connect_s": round(time.monotonic() - started, 2)})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    alive = list(agents)
    while line := (await reader.readline()).decode().strip():
        if line == "stats":
            emit(
                {
                    "connected": len(alive),
                    "sent": counters.sent,
                    "acked": counters.acked,
                    "bytes": counters.bytes,
                }
            )
        elif line.startswith("kill "):
            count = int(line.split()[1])
            doomed, alive = alive[len(alive) - count :], alive[: len(alive) - count]
            for agent in doomed:
                agent.kill()
            emit({"killed": [a.sim.device for a in doomed]})
        elif line == "quit":
            break
    for agent in alive:
        agent.kill()


def emit(obj: dict[str, object]) -> None:
    """One JSON answer line."""
    print(json.dumps(obj), flush=True)


def main() -> None:
    """Parse the command line and run the fleet until stdin closes or says ``quit``."""
    parser = argparse.ArgumentParser(prog="python -m bench.fleetsim")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--prefix", default="vn-bench")
    parser.add_argument("--heartbeat-s", type=float, default=30.0)
    parser.add_argument("--snapshot-s", type=float, default=300.0)
    parser.add_argument("--keepalive-s", type=int, default=30)
    parser.add_argument("--connect-parallel", type=int, default=100)
    parser.add_argument("--tls-ca", help="connect with TLS, verifying the broker against this CA")
    parser.add_argument("--passwords", help="JSON file device -> password (user name = device id)")
    args = parser.parse_args()
    args.tls_context = ssl.create_default_context(cafile=args.tls_ca) if args.tls_ca else None
    args.password_of = json.loads(Path(args.passwords).read_text(encoding="utf-8")) if args.passwords else {}
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
