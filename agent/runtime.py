"""The running agent: probes -> reporting policy -> durable queue -> MQTT, plus commands.

Each poll reads every probe (a failing probe becomes one ``fault_start`` event with code
``probe.<name>`` and a ``fault_end`` when it reads again), sends probe events at once,
a heartbeat when due and telemetry when it changed or a snapshot is due. Everything goes
through the durable queue; the MQTT session drains it.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from agent import __version__
from agent.clock import SYNC_CHECKS, Clock
from agent.commands import CommandDispatcher, CommandHost, Measured
from agent.config import AgentConfig
from agent.core.audio_span import UnsentAudio
from agent.core.messages import PROBE_KINDS, MessageBuilder, event_fields
from agent.core.policy import ReportingPolicy
from agent.core.reporter import Reporter
from agent.mqtt import Session
from agent.probes.base import Probe, ProbeError
from agent.queue import DurableQueue
from protocols import payloads, topics
from protocols.errors import InvalidPayload

log = logging.getLogger(__name__)

AGENT_VERSION = __version__
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
EVENT_CHECK_S = 0.25
QUEUE_FILE = "queue.sqlite3"


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    """This boot's id from the kernel; a random one (logged) where the kernel has none."""
    try:
        return Path(path).read_text(encoding="ascii").strip()[:64] or _random_boot_id()
    except OSError:
        return _random_boot_id()


async def _bounded(what: str, step: Awaitable[Any], timeout_s: float) -> None:
    """Await ``step`` for at most ``timeout_s``; a step still running is cancelled and left.

    Unlike ``asyncio.wait_for`` (3.11), this never waits for a cancelled step to finish.
    """
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        log.warning("shutdown: %s did not finish within %.0f s; going on", what, timeout_s)
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("shutdown: %s failed: %r", what, task.exception())


def _wall(config: AgentConfig) -> Callable[[], float]:
    """The wall clock, shifted by ``[clock] offset_s`` (simulating a device whose clock is off)."""
    offset = config.clock_offset_s
    if not offset:
        return time.time
    return lambda: time.time() + offset


def _random_boot_id() -> str:
    log.warning("no kernel boot id at %s: seq restarts at 0 on every agent start", BOOT_ID_PATH)
    return uuid.uuid4().hex


def create_probes(config: AgentConfig) -> dict[str, Probe]:
    """Build every ``[probes.<name>]`` of the config (the system probe keeps its markers in
    the device's ``state_dir`` unless its section names another).

    Raises:
        ValueError: a probe section is invalid (the probe's message names the key).
    """
    from agent import probes as probe_kinds

    out: dict[str, Probe] = {}
    for name, section in config.probes.items():
        section = dict(section)
        if probe_kind(name, section) == "system":
            section.setdefault("state_dir", str(config.state_dir))
        elif probe_kind(name, section) == "audio":
            section.setdefault("calibration_file", str(config.state_dir / "audio_calibration.json"))
        out[name] = probe_kinds.create(name, section)
    return out


# A fault any probe of a message sees stays seen (the screen and the serial adapter both
# judge a board's blank and frozen).
_RAISED_FLAGS = ("blank", "frozen", "clipping", "dead_air")


def merge_fields(into: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Add one probe's ``values`` to a message's fields: a null never hides another probe's
    value, and a raised fault flag stays raised."""
    for key, value in values.items():
        if key in into and (value is None or (key in _RAISED_FLAGS and into[key] is True)):
            continue
        into[key] = value


def probe_kind(name: str, section: dict[str, Any]) -> str:
    """A probe's kind: its section's ``kind`` key, or its name."""
    kind = section.get("kind", name)
    return kind if isinstance(kind, str) else name


class Agent(CommandHost):
    """One device's agent.

    Args:
        config: the validated configuration.
        probes: probes by name (``create_probes``); tests pass fakes.
        clock: the clock (injectable).
        boot_id: this boot's id.
    """

    def __init__(
        self,
        config: AgentConfig,
        probes: dict[str, Probe],
        clock: Clock | None = None,
        boot_id: str | None = None,
    ) -> None:
        self.config = config
        self.probes = probes
        self.clock = clock or Clock(config.min_epoch_s, SYNC_CHECKS[config.sync_check], wall=_wall(config))
        system = config.probes.get("system", {})
        self.boot_id = boot_id or read_boot_id(str(system.get("boot_id_path", BOOT_ID_PATH)))
        self.queue = DurableQueue(config.state_dir / QUEUE_FILE, self.boot_id, config.queue_max_messages)
        self.builder = MessageBuilder(config.device_id, self.boot_id)
        self.policy = ReportingPolicy(
            config.device_id,
            config.heartbeat_s,
            config.snapshot_s,
            config.jitter,
            config.deadbands,
            now_s=self.clock.mono_s(),
        )
        # The reporting loop's decisions, shared with the MicroPython agent; this class and
        # the MQTT session do the I/O.
        self.reporter = Reporter(
            config.device_id,
            self.policy,
            self.queue,
            config.topic_root,
            config.receipts,
            config.batch_threshold,
            config.batch_max_items,
            config.batch_max_bytes,
        )
        self.dispatcher = CommandDispatcher(self, self.queue.command_seen)
        self.session = Session(
            config,
            self.queue,
            self.reporter,
            self._birth_fields,
            self.clock.stamp,
            self._build,
            self._on_command,
        )
        self._kinds = {name: probe_kind(name, config.probes.get(name, {})) for name in probes}
        self.invalid_messages = 0
        self._poll_lock = asyncio.Lock()
        self._command_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.polls = 0  # completed polls: systemd's watchdog is fed only while this grows
        # Audio readings the policy did not send: they go out merged before the next one,
        # so audio messages tile time (agent/core/audio_span.py).
        self.unsent_audio = UnsentAudio()

    # -- CommandHost ---------------------------------------------------------------------
    def probe(self, name: str) -> Any | None:
        """See `CommandHost.probe` (by name, else the first probe of that kind)."""
        if name in self.probes:
            return self.probes[name]
        for other, probe in self.probes.items():
            if self._kinds[other] == name:
                return probe
        return None

    async def report_now(self) -> Measured:
        """See `CommandHost.report_now`."""
        return await self.poll_once(force=True)

    def set_intervals(self, heartbeat_s: float | None, snapshot_s: float | None) -> Measured:
        """See `CommandHost.set_intervals`."""
        self.policy.set_intervals(heartbeat_s, snapshot_s)
        return {"heartbeat_s": self.policy.heartbeat_s, "snapshot_s": self.policy.snapshot_s}

    def enqueue_result(self, fields: dict[str, Any]) -> None:
        """See `CommandHost.enqueue_result`."""
        self.emit("result", fields)

    async def wait_sent(self, timeout_s: float) -> bool:
        """See `CommandHost.wait_sent`."""
        return await self.session.wait_drained(timeout_s)

    # -- messages ------------------------------------------------------------------------
    def _build(
        self, kind: str, fields: dict[str, Any], seq: int, stamp: tuple[int, bool, int] | None = None
    ) -> dict[str, Any]:
        ts, ok, mono = stamp or self.clock.stamp()
        return self.builder.build(kind, fields, seq, ts, ok, mono)

    def _birth_fields(self, bdseq: int) -> dict[str, Any]:
        machine = self.config.platform or f"{sys.platform}-{platform.machine()}"
        return self.reporter.birth(bdseq, self.config.device_kind, AGENT_VERSION, machine)

    @property
    def faulted(self) -> set[str]:
        """Names of the probes failing now."""
        return set(self.reporter.faulted)

    def emit(
        self, kind: str, fields: dict[str, Any], stamp: tuple[int, bool, int] | None = None
    ) -> int | None:
        """Build, store durably and schedule one message; return its ``seq`` (None if invalid).

        ``stamp`` (``(ts_ms, clock_ok, mono_ms)``) dates a reading taken at an earlier poll.
        """
        root = self.config.topic_root

        def make(seq: int) -> tuple[str, str, bytes]:
            msg = self._build(kind, fields, seq, stamp)
            return topics.topic_for(msg, root), kind, payloads.encode(msg)

        try:
            seq = self.queue.append(make)
        except InvalidPayload as exc:
            self.invalid_messages += 1
            log.error("dropped an invalid %s message: %s", kind, exc)
            return None
        self.session.notify()
        return seq

    # -- polling -------------------------------------------------------------------------
    async def _read(self, name: str, probe: Probe) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(self.config.probe_timeout_s):
                values = await probe.read()
        except Exception as exc:  # ProbeError, timeout, or a probe bug: all become a fault
            reason = str(exc) or f"no answer within {self.config.probe_timeout_s:g} s"
            if not isinstance(exc, ProbeError | TimeoutError):
                log.exception("probe %s crashed", name)
                reason = f"{type(exc).__name__}: {exc}"
            start = self.reporter.probe_failed(name, reason)
            if start is not None:
                log.warning("probe %s failed: %s", name, reason)
                self.emit("event", start)
            return None
        end = self.reporter.probe_read(name)
        if end is not None:
            log.info("probe %s reads again", name)
            self.emit("event", end)
        return dict(values)

    async def poll_once(self, force: bool = False) -> Measured:
        """Read every probe and queue what is due (everything, with ``force``)."""
        async with self._poll_lock:
            by_kind: dict[str, dict[str, Any]] = {"heartbeat": {"uptime_s": round(self.clock.mono_s(), 1)}}
            for name, probe in self.probes.items():
                values = await self._read(name, probe)
                if values is not None:
                    merge_fields(by_kind.setdefault(PROBE_KINDS.get(self._kinds[name], name), {}), values)
            self._note_audio(by_kind.get("audio", {}).get("playing"))
            self._emit_probe_events()
            sent = self._queue_due(by_kind, force)
            self.polls += 1
            return sent

    def _note_audio(self, playing: bool | None) -> None:
        """Tell the amplifier's power meter whether audio plays (drives its ``amp_idle`` fault)."""
        if playing is None:
            return
        for probe in self.probes.values():
            note = getattr(probe, "note_audio", None)
            if note is not None:
                note(bool(playing), self.clock.mono_s())

    def _queue_due(self, by_kind: dict[str, dict[str, Any]], force: bool) -> Measured:
        q = self.queue
        due = self.reporter.due(by_kind, self.clock.mono_s(), force, q.depth, q.dropped)
        audio = by_kind.get("audio")
        if any(kind == "audio" for kind, _ in due):
            held = self.unsent_audio.take()
            if held is not None:
                self.emit("audio", *held)
        elif audio and "rms_dbfs" in audio:
            self.unsent_audio.add(audio, self.clock.stamp())
        return {kind + "_seq": self.emit(kind, fields) for kind, fields in due}

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # one bad poll must not end reporting
                log.exception("poll failed")
            wait = min(self.config.poll_s, self.policy.next_heartbeat_in(self.clock.mono_s()))
            loop = asyncio.get_running_loop()
            end = loop.time() + max(0.05, wait)
            # Events go out at once, not at the next poll: a dead-air edge the audio probe
            # found between polls is sent within EVENT_CHECK_S.
            while (left := end - loop.time()) > 0:
                await asyncio.sleep(min(EVENT_CHECK_S, left))
                self._emit_probe_events()

    def _emit_probe_events(self) -> None:
        for probe in self.probes.values():
            for event in probe.drain_events():
                self.emit("event", event_fields(event))

    async def _on_command(self, data: bytes) -> None:
        # A test tone takes seconds: run commands beside the receive loop, one at a time, in order.
        async def run() -> None:
            async with self._command_lock:
                await self.dispatcher.handle(data)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then shut down cleanly (marker, clean death)."""
        for name, probe in self.probes.items():
            try:
                await probe.start()
            except Exception:  # start() must not raise; if it does, read() will report it
                log.exception("probe %s failed to start", name)
        session = asyncio.create_task(self.session.run())
        poller = asyncio.create_task(self._poll_loop())
        await stop.wait()
        log.info("stopping")
        poller.cancel()
        for task in list(self._tasks):
            task.cancel()
        self.write_clean_shutdown()
        # Every step is bounded: a stop must never hang on a broker, a library or a device.
        await _bounded("MQTT flush and clean death", self.session.stop(), 8.0)
        await _bounded("MQTT session", session, 5.0)
        for name, probe in self.probes.items():
            await _bounded(f"probe {name} close", probe.close(), 2.0)
        self.queue.close()

    def write_clean_shutdown(self) -> None:
        """Leave the marker the system probe reads as reboot reason ``clean``."""
        from agent.probes.system import write_clean_shutdown

        systems = [s for n, s in self.config.probes.items() if probe_kind(n, s) == "system"]
        section = systems[0] if systems else {}
        state_dir = section.get("state_dir", str(self.config.state_dir))
        try:
            write_clean_shutdown(state_dir, self.boot_id)
        except OSError as exc:
            log.error("cannot write the clean-shutdown marker in %s: %s", state_dir, exc)
