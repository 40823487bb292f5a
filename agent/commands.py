"""Remote commands: decode, de-duplicate, run, and answer with a ``result``.

Every payload on the command topic gets exactly one ``result`` (a redelivered duplicate
gets none, so a QoS-1 redelivery never plays the test tone twice). A malformed or
unknown command gets an error result naming the problem; nothing here raises.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import math
import shlex
import struct
import tempfile
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent import command_reconnect
from agent.config import AgentConfig
from protocols import payloads
from protocols.errors import InvalidPayload

log = logging.getLogger(__name__)

Measured = dict[str, Any]
# (measured values, optional action to run once the result is queued)
Outcome = tuple[Measured, Callable[[], Awaitable[None]] | None]


class CommandFailed(Exception):
    """A command ran but did not succeed; the message goes into ``result.error``."""


class CommandHost:
    """What command handlers need from the running agent (implemented by the runtime)."""

    config: AgentConfig

    def probe(self, name: str) -> Any | None:
        """The configured probe called ``name``, or None."""
        raise NotImplementedError

    async def report_now(self) -> Measured:
        """Send a heartbeat and every telemetry kind now; return what was sent."""
        raise NotImplementedError

    def set_intervals(self, heartbeat_s: float | None, snapshot_s: float | None) -> Measured:
        """Change the reporting periods; return the ones now in force."""
        raise NotImplementedError

    def enqueue_result(self, fields: dict[str, Any]) -> None:
        """Queue a ``result`` message."""
        raise NotImplementedError

    async def wait_sent(self, timeout_s: float) -> bool:
        """Wait until everything queued is acknowledged by the broker."""
        raise NotImplementedError


# Where Linux boards expose a hardware serial: device tree (Raspberry Pi, most ARM boards),
# DMI (x86, root only), /proc/cpuinfo (older Pi kernels).
SERIAL_FILES = (
    Path("/proc/device-tree/serial-number"),
    Path("/sys/firmware/devicetree/base/serial-number"),
    Path("/sys/class/dmi/id/product_serial"),
)


def controller_serial(
    files: tuple[Path, ...] = SERIAL_FILES, cpuinfo: Path = Path("/proc/cpuinfo")
) -> Measured:
    """``serial`` of the controller board and where it was read (``serial_source``); None if none."""
    for path in files:
        try:
            value = path.read_bytes().replace(b"\0", b"").decode("ascii", "replace").strip()
        except OSError:
            continue
        if value and value.lower() not in ("none", "to be filled by o.e.m.", "default string"):
            return {"serial": value[:64], "serial_source": str(path)}
    try:
        for line in cpuinfo.read_text(encoding="ascii", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Serial" and value.strip().strip("0"):
                return {"serial": value.strip()[:64], "serial_source": str(cpuinfo)}
    except OSError:
        pass
    return {"serial": None, "serial_source": None}


def write_tone(path: Path, freq_hz: float, level_dbfs: float, seconds: float, rate: int = 48000) -> None:
    """Write a 16-bit mono sine WAV at ``level_dbfs`` (peak) with the stdlib ``wave`` module."""
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    n = int(rate * seconds)
    step = 2 * math.pi * freq_hz / rate
    frames = struct.pack(f"<{n}h", *(int(amplitude * math.sin(step * i)) for i in range(n)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


async def run_command(argv: list[str], timeout_s: float) -> tuple[int, str]:
    """Run a configured command; return ``(exit code, stderr tail)``.

    Raises:
        CommandFailed: it cannot be started or runs longer than ``timeout_s``.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise CommandFailed(f"cannot run {shlex.join(argv)}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(timeout_s):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CommandFailed(f"{argv[0]} did not finish within {timeout_s:g} s") from None
    return proc.returncode or 0, err.decode("utf-8", "replace").strip()[-200:]


def _fill(template: list[str], values: dict[str, Any]) -> list[str]:
    try:
        return [part.format(**values) for part in template]
    except (KeyError, IndexError, ValueError) as exc:
        raise CommandFailed(f"command template {shlex.join(template)} is invalid: {exc!r}") from None


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class CommandDispatcher:
    """Decodes command payloads and runs them, one result per distinct command id.

    Args:
        host: the running agent.
        seen: records a command id and says whether it was seen before (durable).
    """

    def __init__(self, host: CommandHost, seen: Callable[[str], bool]) -> None:
        self.host = host
        self._seen = seen
        self.counts = {"ok": 0, "failed": 0, "invalid": 0, "duplicate": 0}
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Outcome]]] = {
            "report_now": self._report_now,
            "play_test_tone": self._play_test_tone,
            "show_test_pattern": self._show_test_pattern,
            "set_volume": self._set_volume,
            "set_intervals": self._set_intervals,
            "reboot": self._reboot,
            "reconnect": functools.partial(command_reconnect.reconnect, host),
            "identify": self._identify,
        }

    async def handle(self, data: bytes) -> None:
        """Handle one payload from the command topic; never raises."""
        try:
            msg = payloads.decode(data)
            if msg["kind"] != "command":
                raise InvalidPayload(f"message on the command topic must be a command, got {msg['kind']}")
            if msg["device"] != self.host.config.device_id:
                mine = self.host.config.device_id
                raise InvalidPayload(f"command.device is {msg['device']!r}, this is {mine!r}")
        except InvalidPayload as exc:
            self.counts["invalid"] += 1
            command_id = payloads.command_id_of(data) or "unknown"
            log.warning("invalid command %s: %s", command_id, exc)
            self._answer(command_id, _raw_cmd(data), False, f"invalid command: {exc}", {})
            return
        if self._seen(msg["id"]):
            self.counts["duplicate"] += 1
            log.info("command %s already handled, ignoring the redelivery", msg["id"])
            return
        await self._run(msg)

    async def _run(self, msg: dict[str, Any]) -> None:
        after = None
        try:
            measured, after = await self._handlers[msg["cmd"]](msg["args"])
        except CommandFailed as exc:
            self.counts["failed"] += 1
            log.warning("command %s (%s) failed: %s", msg["id"], msg["cmd"], exc)
            self._answer(msg["id"], msg["cmd"], False, str(exc), {})
        except Exception as exc:  # a probe or handler bug still gets an answer
            self.counts["failed"] += 1
            log.exception("command %s (%s) crashed", msg["id"], msg["cmd"])
            self._answer(msg["id"], msg["cmd"], False, f"{type(exc).__name__}: {exc}", {})
        else:
            self.counts["ok"] += 1
            self._answer(msg["id"], msg["cmd"], True, None, measured)
        if after is not None:
            await after()

    def _answer(self, command_id: str, cmd: str, ok: bool, error: str | None, measured: Measured) -> None:
        flat = {k: v for k, v in measured.items() if v is None or isinstance(v, bool | int | float | str)}
        self.host.enqueue_result({"id": command_id, "cmd": cmd, "ok": ok, "error": error, "measured": flat})

    # -- handlers ----------------------------------------------------------------------
    async def _report_now(self, args: dict[str, Any]) -> Outcome:
        return await self.host.report_now(), None

    async def _set_intervals(self, args: dict[str, Any]) -> Outcome:
        return self.host.set_intervals(args.get("heartbeat_s"), args.get("snapshot_s")), None

    async def _set_volume(self, args: dict[str, Any]) -> Outcome:
        template = self.host.config.set_volume
        if template is None:
            raise CommandFailed("set_volume is not configured on this device")
        argv = _fill(template, {"level": args["level"]})
        rc, err = await run_command(argv, self.host.config.command_timeout_s)
        if rc != 0:
            raise CommandFailed(f"{template[0]} exited with {rc}: {err}")
        return {"level": args["level"]}, None

    async def _show_test_pattern(self, args: dict[str, Any]) -> Outcome:
        display = self.host.probe("display")
        if display is None or not hasattr(display, "show_test_pattern"):
            raise CommandFailed("no display probe that can show a test pattern is configured")
        measured = await _maybe_await(display.show_test_pattern(args["pattern"], args["seconds"]))
        return {"pattern": args["pattern"], **(measured or {})}, None

    async def _identify(self, args: dict[str, Any]) -> Outcome:
        """Modem IMEI and SIM ICCID (when a modem probe is configured) and the controller serial."""
        measured: Measured = {"imei": None, "iccid": None, "modem_error": None}
        modem = self.host.probe("modem")
        if modem is not None and hasattr(modem, "identity"):
            try:
                measured.update(await modem.identity())
            except Exception as exc:  # reported in the result, the rest of the identity still goes
                measured["modem_error"] = str(exc)[:200]
        measured.update(await asyncio.to_thread(controller_serial))
        return measured, None

    async def _reboot(self, args: dict[str, Any]) -> Outcome:
        config = self.host.config
        if args["confirm"] != config.device_id:
            raise CommandFailed(f"reboot refused: args.confirm must be the device id {config.device_id!r}")
        if not config.allow_reboot or config.reboot is None:
            raise CommandFailed("reboot refused: [commands] allow_reboot is false on this device")
        argv = config.reboot

        async def reboot_after_result() -> None:
            # Give the result a chance to reach the broker before the board goes down.
            await self.host.wait_sent(5.0)
            log.warning("rebooting on remote command: %s", shlex.join(argv))
            rc, err = await run_command(argv, config.command_timeout_s)
            if rc != 0:
                log.error("reboot command exited with %d: %s", rc, err)

        return {"scheduled": True}, reboot_after_result

    async def _play_test_tone(self, args: dict[str, Any]) -> Outcome:
        config = self.host.config
        if config.player is None:
            raise CommandFailed("no player command is configured on this device")
        freq, level, seconds = float(args["freq_hz"]), float(args["level_dbfs"]), float(args["seconds"])
        measured: Measured = {"freq_hz": freq, "level_dbfs": level, "seconds": seconds}
        audio, power = self.host.probe("audio"), self.host.probe("power_meter")
        measured.update(_suffixed(await self._measure(audio, power, 1.0), "_before"))
        with tempfile.TemporaryDirectory(prefix="tincoso-tone-") as tmp:
            wav = Path(tmp) / "tone.wav"
            await asyncio.to_thread(write_tone, wav, freq, level, seconds)
            values = {"wav": str(wav), "freq_hz": freq, "level_dbfs": level, "seconds": seconds}
            argv = _fill(config.player, values)
            player = asyncio.ensure_future(run_command(argv, seconds + config.command_timeout_s))
            # Measure the middle of the tone: skip the player's start-up and the fade-out.
            await asyncio.sleep(min(0.3, seconds / 4))
            during = await self._measure(audio, power, max(0.2, seconds - 0.6), freq)
            rc, err = await player
        if rc != 0:
            raise CommandFailed(f"{argv[0]} exited with {rc}: {err}")
        measured.update(during)
        return measured, None

    async def _measure(
        self, audio: Any | None, power: Any | None, seconds: float, freq_hz: float | None = None
    ) -> Measured:
        out: Measured = {}
        if audio is not None and hasattr(audio, "measure"):
            try:
                values = await _maybe_await(
                    audio.measure(seconds, freq_hz) if freq_hz else audio.measure(seconds)
                )
                out.update({k: values[k] for k in ("rms_dbfs", "peak_dbfs") if k in values})
                # The level at the requested frequency (Goertzel): the tone, not whatever
                # else is on the line. A zero-crossing frequency estimate is too easily
                # fooled by the noise floor around the tone to report as a measurement.
                if freq_hz and values.get("tone_dbfs") is not None:
                    out["tone_dbfs"] = values["tone_dbfs"]
            except Exception as exc:  # a failed measurement is reported, not fatal
                out["audio_error"] = str(exc)[:200]
        if power is not None:
            try:
                values = await power.read()
                if "amp_power_w" in values:
                    out["amp_power_w"] = values["amp_power_w"]
            except Exception as exc:
                out["power_error"] = str(exc)[:200]
        return out


def _suffixed(values: Measured, suffix: str) -> Measured:
    return {k + suffix: v for k, v in values.items()}


def _raw_cmd(data: bytes) -> str:
    """The ``cmd`` of an invalid command if it is a usable string, for the result."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return "unknown"
    cmd = obj.get("cmd") if isinstance(obj, dict) else None
    return cmd if isinstance(cmd, str) and 0 < len(cmd) <= 32 else "unknown"
