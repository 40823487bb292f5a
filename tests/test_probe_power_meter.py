"""Power meter probe against the PZEM-004T simulator on a PTY and on socket://."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.probes import ProbeError, create
from agent.probes._serial import SerialLink
from agent.probes.power_meter import PowerMeterProbe
from hil_tests.simulators import PowerMeterSimulator
from protocols import modbus


@pytest.fixture(params=["pty", "tcp"])
def meter(request: pytest.FixtureRequest) -> Iterator[PowerMeterSimulator]:
    with PowerMeterSimulator(transport=request.param, noise=False, seed=1) as sim:
        yield sim


def make_probe(url: str, **options: object) -> PowerMeterProbe:
    probe = create("power_meter", {"url": url, "timeout_s": 0.3, **options})
    assert isinstance(probe, PowerMeterProbe)
    return probe


async def test_reads_amplifier_voltage_current_power_energy(meter: PowerMeterSimulator) -> None:
    meter.set_audio_level(-20.0)  # idle 8 W + 10 % of 120 W
    probe = make_probe(meter.url)
    try:
        values = await probe.read()
    finally:
        await probe.close()
    assert values["amp_power_w"] == pytest.approx(20.0, abs=0.1)
    assert values["amp_voltage_v"] == pytest.approx(220.0)
    assert values["amp_current_a"] == pytest.approx(20.0 / (220 * 0.9), abs=0.001)
    assert isinstance(values["amp_energy_wh"], int)
    assert probe.errors == 0
    assert meter.counts["reading"] == 1


async def test_unplugged_meter_is_a_probe_error_naming_the_device_then_recovers(
    meter: PowerMeterSimulator,
) -> None:
    probe = make_probe(meter.url)
    try:
        meter.unplugged = True
        with pytest.raises(ProbeError, match=r"power meter at .*: no answer within 0\.3 s"):
            await probe.read()
        meter.unplugged = False
        assert (await probe.read())["amp_power_w"] == pytest.approx(8.0)
    finally:
        await probe.close()
    assert probe.errors == 1


@pytest.mark.parametrize("kind", ["random", "corrupt"])
async def test_garbage_on_the_line_is_counted_and_the_next_read_resynchronises(
    meter: PowerMeterSimulator, kind: str
) -> None:
    probe = make_probe(meter.url)
    try:
        meter.garbage_rate, meter.garbage_kind = 1.0, kind
        for _ in range(2):
            with pytest.raises(ProbeError, match=r"power meter at .*garbage on the line"):
                await probe.read()
        meter.garbage_rate = 0.0
        assert (await probe.read())["amp_power_w"] == pytest.approx(8.0)
    finally:
        await probe.close()
    assert probe.errors == 2


async def test_modbus_exception_response_is_a_probe_error(meter: PowerMeterSimulator) -> None:
    meter.exception_code = 4
    probe = make_probe(meter.url)
    try:
        with pytest.raises(ProbeError, match=r"exception code 4 \(slave device failure"):
            await probe.read()
    finally:
        await probe.close()


async def test_port_that_does_not_exist_is_a_probe_error(tmp_path: object) -> None:
    probe = make_probe("/dev/nonexistent-tincoso-meter")
    with pytest.raises(ProbeError, match="cannot open"):
        await probe.read()
    await probe.close()
    assert probe.errors == 1


async def test_simulator_gone_from_socket_is_a_probe_error() -> None:
    sim = PowerMeterSimulator(transport="tcp", noise=False).start()
    probe = make_probe(sim.url)
    try:
        await probe.read()
        sim.stop()
        with pytest.raises(ProbeError, match="power meter at socket://"):
            await probe.read()
        with pytest.raises(ProbeError, match="cannot open"):
            await probe.read()
    finally:
        await probe.close()


async def test_amplifier_idle_while_audio_plays_raises_amp_idle_then_clears(
    meter: PowerMeterSimulator,
) -> None:
    meter.set_amplifier("idle")  # 8 W: the horn line is cut, the amplifier sees no load
    probe = make_probe(meter.url, amp_idle_s=10)
    try:
        await probe.read()
        probe.note_audio(True, 100.0)
        probe.note_audio(True, 105.0)
        assert probe.drain_events() == []
        probe.note_audio(True, 110.0)
        [start] = probe.drain_events()
        assert start["event"] == "fault_start"
        assert start["code"] == "amp_idle"
        assert "8.0 W" in start["detail"]
        probe.note_audio(True, 130.0)
        assert probe.drain_events() == []  # one fault_start per transition
        meter.set_audio_level(-12.0)
        await probe.read()
        probe.note_audio(True, 131.0)
        [end] = probe.drain_events()
        assert (end["event"], end["code"]) == ("fault_end", "amp_idle")
    finally:
        await probe.close()


async def test_amplifier_idle_without_audio_is_normal(meter: PowerMeterSimulator) -> None:
    meter.set_amplifier("idle")
    probe = make_probe(meter.url, amp_idle_s=1)
    try:
        await probe.read()
        for t in range(10):
            probe.note_audio(False, float(t))
    finally:
        await probe.close()
    assert probe.drain_events() == []


async def test_audio_stopping_ends_amp_idle(meter: PowerMeterSimulator) -> None:
    meter.set_amplifier("off")
    probe = make_probe(meter.url, amp_idle_s=0)
    try:
        await probe.read()
        probe.note_audio(True, 1.0)
        probe.note_audio(False, 2.0)
    finally:
        await probe.close()
    assert [e["event"] for e in probe.drain_events()] == ["fault_start", "fault_end"]


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"probes\.power_meter\.url is required"):
        create("power_meter", {})
    with pytest.raises(ValueError, match=r"probes\.power_meter\.idle_power_w must be a number"):
        create("power_meter", {"url": "/dev/ttyUSB0", "idle_power_w": "15"})


class _ReplayPort:
    """Stands in for the port in the fuzz test: whatever bytes the line carried."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.in_waiting = len(data)

    def reset_input_buffer(self) -> None:
        pass

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def read(self, size: int) -> bytes:
        chunk, self.data = self.data[:size], self.data[size:]
        self.in_waiting = len(self.data)
        return chunk

    def close(self) -> None:
        pass


good_frame = modbus.build_pzem_response(
    1,
    {
        "voltage_v": 230.0,
        "current_a": 0.1,
        "power_w": 20.0,
        "energy_wh": 5,
        "frequency_hz": 50.0,
        "power_factor": 0.9,
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=80),
        st.builds(lambda a, b: a + good_frame[: len(b)] + b, st.binary(max_size=20), st.binary(max_size=30)),
        st.builds(
            lambda i, flip: good_frame[:i] + bytes((good_frame[i] ^ flip,)) + good_frame[i + 1 :],
            st.integers(0, len(good_frame) - 1),
            st.integers(1, 255),
        ),
    )
)
async def test_fuzzed_line_bytes_never_raise_past_the_probe(data: bytes) -> None:
    probe = make_probe("/dev/unused")
    link = probe.link
    assert isinstance(link, SerialLink)
    link.timeout_s = 0.01  # the replayed bytes are all there at once; do not wait for more
    link._port = _ReplayPort(data)  # type: ignore[assignment]
    try:
        values = await probe.read()
    except ProbeError as exc:
        assert "power meter at /dev/unused" in str(exc)
        assert probe.errors == 1
    else:
        assert values["amp_voltage_v"] >= 0


def test_serial_module_is_real() -> None:
    # The probe opens hardware through pyserial's URL handlers; make sure socket:// exists.
    assert serial.serial_for_url("loop://").is_open
