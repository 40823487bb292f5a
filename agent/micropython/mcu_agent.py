"""The MCU agent's loop: meter, audio level and dead air, flash ring, MQTT over TLS.

One pass of ``step()``: feed the watchdog, measure one audio window and the PZEM-004T,
queue what the reporting policy says is due (heartbeat, audio telemetry, events) in the
flash ring, then serve MQTT: connect when due (birth with the boot-persistent ``bdseq``,
Last Will with the same), handle commands and delivery receipts, send the ring's oldest
unsent messages; each leaves the ring when a receipt covers it (``agent.core.outbox``).
Every decision of that loop is the core's ``agent.core.reporter.Reporter``, the same as the
CPython agent's; this module does the I/O. Any error of a pass is printed, counted and the
loop goes on: the only ways out are the watchdog and a power cut.

Runs on MicroPython (ESP32 and the unix port); the board layer does all I/O.
"""

TYPE_CHECKING = False  # mypy treats this name as True; MicroPython has no typing

if TYPE_CHECKING:
    from typing import Any

import binascii
import os

from agent.core.dead_air import DeadAirDetector
from agent.core.levels import (
    decode_s16le,
    is_clipping,
    longest_rail_run,
    mean_square_to_dbfs,
    peak_amplitude,
    sum_squares,
    to_dbfs,
)
from agent.core.messages import MessageBuilder, clock_ok, event_fields, result_fields
from agent.core.outbox import RingOutbox
from agent.core.policy import ReportingPolicy
from agent.core.reporter import Reporter
from agent.core.ring import RingBuffer
from agent.micropython.mqtt_client import MQTTClient
from protocols import modbus, payloads, topics

AGENT_VERSION = "0.2.0-mpy"
# Samples measured at a time (2 KiB of PCM).
AUDIO_CHUNK = 1024


class MonoClock:
    """Milliseconds since boot from a wrapping tick counter, never negative, never wrapping.

    ``ticks_ms`` wraps (every 2**30 ms on MicroPython, about 12.4 days); each call adds the
    ticks since the previous one, so the total keeps growing as long as it is read at
    least once per half period (the loop reads it every second).
    """

    def __init__(self, ticks_ms: "Any", ticks_diff: "Any") -> None:
        self._ticks = ticks_ms
        self._diff = ticks_diff
        self._last = ticks_ms()
        self._ms = 0
        self.wraps = 0

    def ms(self) -> int:
        """Milliseconds since this clock was made."""
        now = self._ticks()
        step = self._diff(now, self._last)
        if now < self._last:
            self.wraps += 1
        if step > 0:
            self._ms += step
        self._last = now
        return self._ms


class FlashCounter:
    """An integer in a flash file that survives reboots (``bdseq``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.value = 0
        self.existed = True
        try:
            with open(path) as f:
                self.value = int(f.read().strip() or "0")
        except (OSError, ValueError):
            self.existed = False

    def bump(self) -> int:
        """Add one, store it (write then rename: a torn write keeps the old value)."""
        self.value += 1
        with open(self.path + ".tmp", "w") as f:
            f.write(str(self.value))
        os.rename(self.path + ".tmp", self.path)
        return self.value


class McuAgent:
    """The MicroPython agent for one speaker cluster.

    Args:
        cfg: the device's ``config.json`` (see agent/README.md).
        board: the board layer (``board_esp32.Esp32Board`` or ``board_unix.UnixBoard``).
    """

    def __init__(self, cfg: "dict[str, Any]", board: "Any") -> None:
        self.cfg = cfg
        self.board = board
        self.device = topics.check_device_id(cfg["device"])
        self.root = cfg.get("topic_root", topics.ROOT)
        flash = board.flash_dir
        self.bdseq = FlashCounter(flash + "/bdseq")
        cause = board.reset_cause()
        self.reboot_reason = cause if self.bdseq.existed else "first_boot"
        self.clock = MonoClock(board.ticks_ms, board.ticks_diff)
        self.ring = RingBuffer(
            flash + "/queue.ring", cfg.get("ring_records", 256), cfg.get("record_size", 1024)
        )
        self.outbox = RingOutbox(self.ring, int(cfg.get("receipt_timeout_ms", 60000)))
        self.builder = MessageBuilder(self.device, binascii.hexlify(os.urandom(8)).decode())
        self.policy = ReportingPolicy(
            self.device, cfg.get("heartbeat_s", 30), cfg.get("snapshot_s", 300), now_s=0.0
        )
        # The reporting loop's decisions, shared with the CPython agent; this class does the I/O.
        self.reporter = Reporter(
            self.device, self.policy, self.outbox, self.root, bool(cfg.get("receipts", True)), 50, 20, 16384
        )
        self.dead_air = DeadAirDetector(
            cfg.get("dead_air_threshold_dbfs", -50.0),
            cfg.get("dead_air_enter_s", 15.0),
            cfg.get("dead_air_clear_s", 10.0),
        )
        self.window_s = float(cfg.get("window_s", 1.0))
        self.min_epoch_ms = int(cfg.get("min_epoch_ms", 1735689600000))
        self.seq = 0
        self.lost = 0  # oversize or invalid messages that could not be queued
        self.errors = 0
        self.synced = None  # type: bool | None
        self.client = None  # type: Any
        self.next_connect_ms = 0
        self.backoff_ms = 1000
        self.wdt = board.watchdog(int(cfg.get("watchdog_ms", 30000)))

    # -- messages ----------------------------------------------------------------------
    def stamp(self) -> "tuple[int, bool, int]":
        """``(ts_ms, clock_ok, mono_ms)`` of now."""
        ts = self.board.wall_ms()
        return ts, clock_ok(ts, self.synced, self.min_epoch_ms), self.clock.ms()

    def emit(self, kind: str, fields: "dict[str, Any]") -> bool:
        """Build one message and store it in the ring; False (and counted) if it cannot be."""
        ts, ok, mono = self.stamp()
        try:
            data = payloads.encode(self.builder.build(kind, fields, self.seq, ts, ok, mono))
            self.outbox.append(data)
        except ValueError as exc:  # InvalidPayload, or larger than a ring record
            self.lost += 1
            print("dropped a %s message (%d so far): %s" % (kind, self.lost, exc))
            return False
        self.seq += 1
        return True

    def queue_dropped(self) -> int:
        """Messages lost on this device: the ring's drops plus messages too large to queue."""
        return self.ring.dropped + self.lost

    # -- measuring ---------------------------------------------------------------------
    def read_meter(self) -> "dict[str, Any] | None":
        """The PZEM-004T's reading as the audio message's ``amp_*`` fields, or None."""
        request = modbus.build_read_request(modbus.PZEM_GENERAL_ADDRESS)
        reason = None
        try:
            frame = self.board.uart_exchange(
                request, modbus.find_response, int(self.cfg.get("meter_timeout_ms", 500))
            )
            if frame is None:
                reason = "no answer from the power meter"
            else:
                r = modbus.parse_pzem_response(frame)
        except (OSError, ValueError) as exc:
            reason = str(exc)
        if reason is not None:
            start = self.reporter.probe_failed("power_meter", reason)
            if start is not None:
                self.emit("event", start)
            return None
        end = self.reporter.probe_read("power_meter")
        if end is not None:
            self.emit("event", end)
        return {
            "amp_voltage_v": r["voltage_v"],
            "amp_current_a": r["current_a"],
            "amp_power_w": r["power_w"],
            "amp_energy_wh": r["energy_wh"],
        }

    def read_audio(self, now_s: float) -> "dict[str, Any] | None":
        """One audio window's level, clipping and dead-air state, or None without input.

        The window is read and measured in chunks of ``AUDIO_CHUNK`` samples: a 1-s window at
        16 kHz decoded at once would hold 16,000 sample objects, a third of an ESP32's heap.
        """
        left = int(self.board.audio_rate * self.window_s)
        energy = 0.0
        peak = 0
        rail = 0
        count = 0
        while left > 0:
            pcm = self.board.read_audio(min(left, AUDIO_CHUNK) * 2)
            if not pcm:
                break
            samples = decode_s16le(pcm[: len(pcm) // 2 * 2])
            energy += sum_squares(samples)
            peak = max(peak, peak_amplitude(samples))
            rail = max(rail, longest_rail_run(samples))
            count += len(samples)
            left -= len(samples)
        if not count:
            return None
        peak_level = to_dbfs(peak)
        window = {
            "rms_dbfs": mean_square_to_dbfs(energy / count),
            "peak_dbfs": peak_level,
            "clipping": is_clipping(peak_level, rail),
        }
        rms = window["rms_dbfs"]
        edge = self.dead_air.update(rms, now_s)
        if edge == "start":
            self.emit("event", event_fields({"event": "fault_start", "code": "dead_air"}))
        elif edge == "end":
            self.emit("event", event_fields({"event": "fault_end", "code": "dead_air"}))
        return {
            "window_s": self.window_s,
            "playing": rms >= self.dead_air.threshold_dbfs,
            "rms_dbfs": round(max(rms, -200.0), 1),
            "peak_dbfs": round(max(window["peak_dbfs"], -200.0), 1),
            "dead_air": self.dead_air.active,
            "dead_air_s": round(self.dead_air.silent_for_s, 1),
            "clipping": window["clipping"],
        }

    def measure(self, force: bool = False) -> None:
        """Measure, then queue what the core's reporting says is due."""
        now = self.clock.ms() / 1000
        audio = self.read_audio(now)
        meter = self.read_meter()
        heartbeat = {
            "uptime_s": round(now, 1),
            "reboot_reason": self.reboot_reason,
            "net_type": self.board.net_type,
            "signal_dbm": self.board.signal_dbm(),
        }
        by_kind = {"heartbeat": heartbeat}  # type: dict[str, dict[str, Any]]
        if audio is not None:
            if meter is not None:
                audio.update(meter)
            by_kind["audio"] = audio
        for kind, fields in self.reporter.due(by_kind, now, force, self.outbox.depth, self.queue_dropped()):
            self.emit(kind, fields)

    # -- MQTT --------------------------------------------------------------------------
    def make_client(self) -> "Any":
        """A client for this device from the config (TLS when ``mqtt_cafile`` is set)."""
        c = self.cfg
        return MQTTClient(
            self.device,
            c["mqtt_host"],
            int(c.get("mqtt_port", 8883)),
            username=c.get("mqtt_username"),
            password=c.get("mqtt_password"),
            keepalive_s=int(c.get("keepalive_s", 30)),
            timeout_s=float(c.get("mqtt_timeout_s", 10)),
            cafile=c.get("mqtt_cafile"),
            server_name=c.get("mqtt_server_name"),
        )

    def connect(self) -> None:
        """Connect with a Last Will, subscribe to commands, publish the birth."""
        if self.synced is not True:
            self.synced = self.board.sync_clock()
        bdseq = self.bdseq.bump()
        ts, ok, mono = self.stamp()
        rep = self.reporter
        client = self.make_client()
        client.on_message = self.on_message
        client.connect((rep.state_topic, rep.will(ts, ok, bdseq), True), clean_session=False)
        self.client = client
        client.subscribe(rep.command_topic, 1)
        if rep.receipts:
            client.subscribe(rep.receipt_topic, 1)
        rep.connected()  # unreceipted readings go again on a new connection
        birth = rep.birth(bdseq, self.cfg.get("kind", "speaker_cluster"), AGENT_VERSION, self.board.platform)
        client.publish(
            rep.state_topic,
            payloads.encode(self.builder.build("birth", birth, self.seq, ts, ok, mono)),
            1,
            True,
        )
        self.seq += 1
        print("connected to %s:%s (bdseq %d)" % (self.cfg["mqtt_host"], self.cfg.get("mqtt_port"), bdseq))

    def drain(self, window: int = 8) -> None:
        """Send the oldest unsent messages, one publish at a time (each waits for its PUBACK);
        the outbox keeps them until their receipt."""
        rows = [(data, None, None, data) for data in self.outbox.unsent(window * 20)]
        for keys, topic, data in self.reporter.publications(rows, self.outbox.depth, window):
            if topic is not None and data is not None:
                self.client.publish(topic, data, 1)
            self.reporter.published(keys, self.clock.ms())

    def on_message(self, topic: str, data: bytes) -> None:
        """A receipt or a command from the backend."""
        if topic != self.reporter.receipt_topic:
            self.on_command(topic, data)
            return
        try:
            self.reporter.on_receipt(data)
        except ValueError as exc:  # InvalidPayload: counted by the reporter, never fatal
            print("ignored an invalid receipt (%d so far): %s" % (self.reporter.receipts_invalid, exc))

    def on_command(self, topic: str, data: bytes) -> None:
        """Answer a command: ``report_now`` here; the others are not on this board."""
        cid = payloads.command_id_of(data) or "unknown"
        try:
            cmd = payloads.decode(data)
        except ValueError as exc:
            self.emit("result", result_fields(cid, "unknown", False, str(exc), {}))
            return
        if cmd["cmd"] == "report_now":
            self.policy.force()
            self.emit("result", result_fields(cid, cmd["cmd"], True, None, {}))
        else:
            self.emit("result", result_fields(cid, cmd["cmd"], False, "not supported on this board", {}))

    def serve_mqtt(self) -> None:
        """Connect when due, handle what arrived, send; a network error drops the client."""
        now = self.clock.ms()
        try:
            if self.client is None:
                if now < self.next_connect_ms or not self.board.network_up():
                    return
                self.connect()
                self.backoff_ms = 1000
            self.wdt.feed()
            self.client.check_msg()
            if self.reporter.receipts:
                self.outbox.check_timeout(self.clock.ms())
            self.drain()
        except Exception as exc:  # every network, TLS or broker failure: reconnect later
            self.errors += 1
            print("mqtt: %r; retry in %d ms" % (exc, self.backoff_ms))
            if self.client is not None:
                self.client.close()
            self.client = None
            self.next_connect_ms = self.clock.ms() + self.backoff_ms
            self.backoff_ms = min(self.backoff_ms * 2, int(self.cfg.get("reconnect_max_ms", 60000)))

    # -- the loop ----------------------------------------------------------------------
    def step(self) -> None:
        """One pass of the loop; never raises an ``Exception``."""
        self.wdt.feed()
        try:
            self.measure()
        except Exception as exc:  # a measuring bug must not stop reporting
            self.errors += 1
            print("measure: %r" % (exc,))
        self.serve_mqtt()

    def run(self) -> None:
        """Forever: a pass, then sleep out the rest of ``poll_s``."""
        poll_ms = int(self.cfg.get("poll_s", 1.0) * 1000)
        print(
            "tincoso MCU agent %s for %s, reboot reason %s" % (AGENT_VERSION, self.device, self.reboot_reason)
        )
        wraps = 0
        while True:
            start = self.clock.ms()
            self.step()
            if self.clock.wraps != wraps:
                wraps = self.clock.wraps
                print("tick counter wrapped at %d ms since boot" % self.clock.ms())
            left = poll_ms - (self.clock.ms() - start)
            if left > 0:
                self.board.sleep_ms(left)
