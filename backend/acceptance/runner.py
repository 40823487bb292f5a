"""Drive one device through the acceptance checks over MQTT, as the backend identity.

:class:`DeviceLink` subscribes to the device's state, telemetry, event, batch and result
topics and publishes commands on its command topic; :func:`run_acceptance` runs the
checks of a profile in order (online, telemetry, report-now, test tone or test pattern,
forced reconnect, clock) and returns an :class:`AcceptanceRun` for the report. A device
that is not online is not sent any command: a command queued for an offline device would
play its test tone whenever it came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiomqtt

from backend.acceptance import checks as C
from backend.acceptance.parse import Observed, birth_age_s, parse_device_message
from backend.acceptance.profile import Profile, default_profile
from backend.acceptance.text import tr
from backend.config import MqttSettings
from protocols import payloads, topics

__all__ = ["AcceptanceError", "AcceptanceRun", "BrokerSettings", "DeviceLink", "run_acceptance"]

# Kinds that have the hardware a check needs.
_NEEDS_KIND = {
    "test_tone": ("speaker_cluster",),
    "amplifier": ("speaker_cluster",),
    "test_pattern": ("eboard", "district_led"),
}


class AcceptanceError(Exception):
    """The run cannot start (broker unreachable, no profile for the device)."""


@dataclass(frozen=True)
class BrokerSettings:
    """How the acceptance runner reaches the broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    topic_root: str = topics.ROOT

    @classmethod
    def from_mqtt(cls, mqtt: MqttSettings) -> Self:
        """The broker of a ``backend.toml`` ``[mqtt]`` section (its client id is not reused)."""
        return cls(
            mqtt.host,
            mqtt.port,
            mqtt.username,
            mqtt.password,
            mqtt.tls or bool(mqtt.tls_ca),
            mqtt.tls_ca,
            mqtt.tls_cert,
            mqtt.tls_key,
            mqtt.topic_root,
        )

    def client(self) -> aiomqtt.Client:
        """A fresh clean-session client; its id never collides with ingest or monitor."""
        context = None
        if self.tls or self.tls_ca:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=f"tincoso-acceptance-{secrets.token_hex(4)}",
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            keepalive=30,
            tls_context=context,
        )


class DeviceLink:
    """An MQTT session on one device's subtree: everything it sends, and its commands.

    Args:
        settings: the broker.
        device_id: the device under test.
        wall: wall clock (s), for receive timestamps.
        mono: monotonic clock (s), for durations.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        device_id: str,
        *,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.device_id = topics.check_device_id(device_id)
        self.wall, self.mono = wall, mono
        self.observed: list[Observed] = []
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._stack = contextlib.AsyncExitStack()

    def now_ms(self) -> int:
        """Backend wall clock in unix ms."""
        return int(self.wall() * 1000)

    async def __aenter__(self) -> Self:
        root, device = self.settings.topic_root, self.device_id
        try:
            self._client = await self._stack.enter_async_context(self.settings.client())
            filters = [f"{root}/{device}/{channel}" for channel in ("state", "event", "batch", "result")]
            filters.append(f"{root}/{device}/telemetry/+")
            await self._client.subscribe([(f, 1) for f in filters])
        except aiomqtt.MqttError as exc:
            await self._stack.aclose()
            where = f"{self.settings.host}:{self.settings.port}"
            raise AcceptanceError(f"cannot reach the MQTT broker at {where}: {exc}") from None
        self._reader = asyncio.create_task(self._read(self._client))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
        with contextlib.suppress(aiomqtt.MqttError):
            await self._stack.aclose()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            seen = parse_device_message(
                self.device_id,
                str(message.topic),
                payload,
                self.now_ms(),
                self.mono(),
                retained=bool(message.retain),
                root=self.settings.topic_root,
            )
            async with self._changed:
                self.observed.append(seen)
                self._changed.notify_all()

    async def wait_for(
        self, match: Callable[[Observed, dict[str, Any]], bool], timeout_s: float, start: int = 0
    ) -> tuple[Observed, dict[str, Any]] | None:
        """The first message from index ``start`` on that ``match`` accepts, waiting ``timeout_s`` at most."""
        deadline = self.mono() + timeout_s
        index = start
        async with self._changed:
            while True:
                for seen in self.observed[index:]:
                    for msg in seen.messages:
                        if match(seen, msg):
                            return seen, msg
                index = len(self.observed)
                left = deadline - self.mono()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._changed.wait()

    async def command(
        self, cmd: str, args: Mapping[str, Any], timeout_s: float
    ) -> tuple[Observed | None, dict[str, Any] | None, float]:
        """Publish a command and wait for its result.

        Returns:
            ``(observed, result, round trip s)``; ``observed`` and ``result`` are None on timeout.
        """
        assert self._client is not None, "use DeviceLink as an async context manager"
        command_id = f"acc-{secrets.token_hex(6)}-{cmd}"[:64]
        msg = payloads.command(self.device_id, command_id, cmd, dict(args), self.now_ms())
        mark = len(self.observed)
        sent = self.mono()
        topic = topics.command_topic(self.device_id, self.settings.topic_root)
        await self._client.publish(topic, payloads.encode(msg), qos=1)
        found = await self.wait_for(
            lambda o, m: m["kind"] == "result" and m["id"] == command_id, timeout_s, start=mark
        )
        if found is None:
            return None, None, self.mono() - sent
        return found[0], found[1], found[0].received_mono - sent

    def invalid(self) -> list[str]:
        """Why each rejected payload was rejected."""
        return [f"{o.topic}: {o.error}" for o in self.observed if o.error is not None]


@dataclass
class AcceptanceRun:
    """Everything the report needs from one run."""

    device_id: str
    device_kind: str | None
    birth: dict[str, Any] | None
    profile: Profile
    checks: list[C.CheckResult]
    started_ms: int
    ended_ms: int
    invalid_messages: list[str] = field(default_factory=list)
    # The ``identify`` answer: imei, iccid, serial (None each when unknown), error if any.
    hardware: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """Every check passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)


async def run_acceptance(
    settings: BrokerSettings,
    device_id: str,
    *,
    profile: Profile | None = None,
    kind_hint: str | None = None,
    lang: str = "vi",
    link: DeviceLink | None = None,
) -> AcceptanceRun:
    """Run the acceptance checks against one device.

    Args:
        settings: the broker.
        device_id: the device under test.
        profile: the limits; None takes the default of the device's kind (from the birth,
            else ``kind_hint``).
        kind_hint: the device's kind from the registry.
        lang: language of the check details.
        link: an already-built link (tests inject clocks this way).

    Raises:
        AcceptanceError: broker unreachable, or no profile can be chosen.
    """
    link = link or DeviceLink(settings, device_id)
    async with link:
        return await _Session(link, profile, kind_hint, lang).run()


def _live(kind: str) -> Callable[[Observed, dict[str, Any]], bool]:
    """Matches a message of ``kind`` sent during the run (not a retained one)."""
    return lambda seen, msg: not seen.retained and msg["kind"] == kind


class _Session:
    def __init__(self, link: DeviceLink, profile: Profile | None, kind_hint: str | None, lang: str) -> None:
        self.link, self.lang = link, lang
        self.profile = profile
        self.kind_hint = kind_hint
        self.results: dict[str, C.CheckResult] = {}
        self.fresh: list[tuple[dict[str, Any], int]] = []
        self.hardware: dict[str, Any] | None = None

    def span(self, start_ms: int) -> tuple[int, int]:
        return start_ms, self.link.now_ms()

    async def run(self) -> AcceptanceRun:
        link = self.link
        started = link.now_ms()
        wait = self.profile.state_wait_s if self.profile else 5.0
        found = await link.wait_for(lambda o, m: o.channel == "state", wait)
        state = found[1] if found else None
        birth = state if state is not None and state["kind"] == "birth" else None
        kind = birth["device_kind"] if birth else self.kind_hint
        profile = self.profile
        if profile is None:
            if kind is None:
                raise AcceptanceError(tr(self.lang, "no_agent_birth", device=link.device_id))
            profile = default_profile(kind)
        self.profile = profile
        if birth is None:
            self.results["online"] = C.check_online(state, None, profile, self.span(started), self.lang)
        else:
            await self._online_and_report(birth, started)
            await self._identify()
            await self._telemetry(started)
            await self._device_tests(kind)
            await self._reconnect(birth)
            self.results["clock"] = C.check_clock(self.fresh, profile, self.span(started), self.lang)
        checks = [self._judged(name, started) for name in profile.checks]
        return AcceptanceRun(
            link.device_id,
            kind,
            birth,
            profile,
            checks,
            started,
            link.now_ms(),
            link.invalid(),
            self.hardware,
        )

    async def _identify(self) -> None:
        """Ask for the hardware identity; an agent without ``identify`` leaves it unknown."""
        assert self.profile is not None
        _, result, _ = await self.link.command("identify", {}, self.profile.command_timeout_s)
        measured = result.get("measured", {}) if result else {}
        self.hardware = {
            "imei": measured.get("imei"),
            "iccid": measured.get("iccid"),
            "serial": measured.get("serial"),
            "serial_source": measured.get("serial_source"),
            "error": (None if result and result["ok"] else (result or {}).get("error") or "no answer")
            or measured.get("modem_error"),
        }

    def _judged(self, name: str, started: int) -> C.CheckResult:
        if name in self.results:
            return self.results[name]
        key = (
            "not_run_offline"
            if "online" in self.results and not self.results["online"].passed
            else "not_run_kind"
        )
        return C.not_run(name, key, self.span(started), self.lang)

    async def _online_and_report(self, birth: dict[str, Any], started: int) -> None:
        assert self.profile is not None
        link, profile = self.link, self.profile
        t0 = link.now_ms()
        seen, result, rtt = await link.command("report_now", {}, profile.command_timeout_s)
        self.results["report_now"] = C.check_report_now(
            result, rtt if result else None, profile, self.span(t0), self.lang
        )
        if seen is not None and result is not None:
            self.fresh.append((result, seen.received_ms))
            wanted = {v for k, v in result["measured"].items() if k.endswith("_seq") and isinstance(v, int)}
            for other in link.observed:
                for msg in other.messages:
                    if (
                        not other.retained
                        and msg.get("seq") in wanted
                        and msg.get("boot_id") == result["boot_id"]
                    ):
                        self.fresh.append((msg, other.received_ms))
        age = birth_age_s(birth, result, seen.received_ms if seen else 0, link.now_ms())
        self.results["online"] = C.check_online(birth, age, profile, self.span(started), self.lang)

    async def _telemetry(self, started: int) -> None:
        assert self.profile is not None
        profile, link = self.profile, self.link
        deadline = link.mono() + profile.telemetry_wait_s
        latest: dict[str, dict[str, Any] | None] = {}
        for kind in profile.telemetry_kinds:
            found = await link.wait_for(_live(kind), max(0.0, deadline - link.mono()))
            latest[kind] = found[1] if found else None
        for seen in link.observed:  # the freshest of each kind wins
            for msg in seen.messages:
                if msg["kind"] in topics.TELEMETRY_KINDS:
                    latest[msg["kind"]] = msg
        self.results["telemetry"] = C.check_telemetry(latest, profile, self.span(started), self.lang)

    async def _device_tests(self, kind: str | None) -> None:
        assert self.profile is not None
        profile, link = self.profile, self.link
        wants_tone = "test_tone" in profile.checks or "amplifier" in profile.checks
        if wants_tone and kind in _NEEDS_KIND["test_tone"]:
            t0 = link.now_ms()
            args = {
                "freq_hz": profile.tone_freq_hz,
                "level_dbfs": profile.tone_level_dbfs,
                "seconds": profile.tone_seconds,
            }
            _, result, _ = await link.command(
                "play_test_tone", args, profile.tone_seconds + profile.command_timeout_s
            )
            self.results["test_tone"] = C.check_test_tone(result, profile, self.span(t0), self.lang)
            self.results["amplifier"] = C.check_amplifier(result, profile, self.span(t0), self.lang)
        if "test_pattern" in profile.checks and kind in _NEEDS_KIND["test_pattern"]:
            await self._test_pattern()

    async def _test_pattern(self) -> None:
        assert self.profile is not None
        profile, link = self.profile, self.link
        t0 = link.now_ms()
        args = {"pattern": profile.pattern, "seconds": profile.pattern_seconds}
        _, result, _ = await link.command("show_test_pattern", args, profile.pattern_wait_s)
        displayed = None
        if result is not None and result["ok"]:
            expected = "TEST:" + profile.pattern
            mark = len(link.observed)
            await link.command("report_now", {}, profile.command_timeout_s)  # a display message now
            found = await link.wait_for(
                lambda o, m: m["kind"] == "display" and m["content_id"] == expected,
                profile.pattern_wait_s,
                mark,
            )
            if found is not None:
                displayed = expected
            else:
                shown = [m for o in link.observed[mark:] for m in o.messages if m["kind"] == "display"]
                displayed = shown[-1]["content_id"] if shown else None
        self.results["test_pattern"] = C.check_test_pattern(
            result, displayed, profile, self.span(t0), self.lang
        )

    async def _reconnect(self, birth: dict[str, Any]) -> None:
        assert self.profile is not None
        profile, link = self.profile, self.link
        if "reconnect" not in profile.checks:
            return
        t0 = link.now_ms()
        seen, result, _ = await link.command(
            "reconnect", {"after_s": profile.reconnect_after_s}, profile.command_timeout_s
        )
        recovered = None
        if seen is not None and result is not None and result["ok"]:
            old = result["measured"].get("bdseq")
            old = old if isinstance(old, int) else birth["bdseq"]
            found = await link.wait_for(
                lambda o, m: m["kind"] == "birth" and m["bdseq"] > old,
                profile.reconnect_after_s + profile.reconnect_limit_s + 1.0,
            )
            if found is not None:
                recovered = max(0.0, found[0].received_mono - seen.received_mono - profile.reconnect_after_s)
                # One more round trip: everything queued before it has arrived after it.
                await link.command("report_now", {}, profile.command_timeout_s)
        boot = birth["boot_id"]
        # From the birth the test started with: with delivery receipts the device also sends
        # again readings from before it (not receipted yet), around births not resent.
        first = birth["seq"] if isinstance(birth.get("seq"), int) else 0
        seqs = [
            m["seq"]
            for o in link.observed
            for m in o.messages
            if (not o.retained or m is birth)
            and m.get("boot_id") == boot
            and isinstance(m.get("seq"), int)
            and m["seq"] >= first
        ]
        self.results["reconnect"] = C.check_reconnect(
            result, recovered, seqs, profile, self.span(t0), self.lang
        )
