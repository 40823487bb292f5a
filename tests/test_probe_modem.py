"""Modem probe against the AT-command modem simulator on a PTY and on socket://."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.probes import ProbeError, create
from hil_tests.simulators import ModemSimulator


@pytest.fixture(params=["pty", "tcp"])
def modem(request: pytest.FixtureRequest) -> Iterator[ModemSimulator]:
    with ModemSimulator(transport=request.param, rssi=13, operator="Viettel", act=7, seed=2) as sim:
        yield sim


async def read_once(url: str) -> dict[str, object]:
    probe = create("modem", {"url": url, "timeout_s": 0.2})
    try:
        return await probe.read()
    finally:
        await probe.close()


async def test_reads_signal_operator_and_4g_with_echo_on(modem: ModemSimulator) -> None:
    assert modem.echo  # factory default: the probe must cope with the echoed command
    assert await read_once(modem.url) == {"signal_dbm": -87, "operator": "Viettel", "net_type": "4g"}


@pytest.mark.parametrize(("act", "net_type"), [(7, "4g"), (2, "3g"), (0, "2g"), (11, "5g")])
async def test_access_technology_maps_to_net_type(modem: ModemSimulator, act: int, net_type: str) -> None:
    modem.set_operator("MobiFone", act)
    values = await read_once(modem.url)
    assert values["net_type"] == net_type
    assert values["operator"] == "MobiFone"


async def test_lost_signal_reads_none_not_an_error(modem: ModemSimulator) -> None:
    modem.lose_signal()
    assert await read_once(modem.url) == {"signal_dbm": None, "operator": None, "net_type": "unknown"}


async def test_unplugged_modem_is_a_counted_probe_error(modem: ModemSimulator) -> None:
    probe = create("modem", {"url": modem.url, "timeout_s": 0.2})
    try:
        modem.unplugged = True
        with pytest.raises(ProbeError, match=r"modem at .*AT\+CSQ: no answer within 0\.2 s"):
            await probe.read()
        modem.unplugged = False
        assert (await probe.read())["signal_dbm"] == -87
    finally:
        await probe.close()
    assert probe.errors == 1


@pytest.mark.parametrize("kind", ["random", "corrupt"])
async def test_garbage_from_the_modem_is_a_probe_error(modem: ModemSimulator, kind: str) -> None:
    modem.garbage_rate, modem.garbage_kind = 1.0, kind
    with pytest.raises(ProbeError, match=r"modem at .*AT\+CSQ"):
        await read_once(modem.url)


async def test_sim_missing_cme_error_names_the_code(modem: ModemSimulator) -> None:
    modem.cme_error = 10
    with pytest.raises(ProbeError, match=r"modem at .*CME ERROR: 10.*AT\+CSQ"):
        await read_once(modem.url)
