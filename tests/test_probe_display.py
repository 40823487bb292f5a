"""Display probe against the LED sending-card simulator on a PTY and on socket://."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agent.probes import ProbeError, create
from agent.probes.display import DisplayProbe
from hil_tests.simulators import DisplayBoardSimulator
from protocols import display_frame as df


@pytest.fixture(params=["pty", "tcp"])
def board(request: pytest.FixtureRequest) -> Iterator[DisplayBoardSimulator]:
    with DisplayBoardSimulator(transport=request.param, seed=3, rotate_s=0.2) as sim:
        yield sim


def make_probe(url: str, **options: object) -> DisplayProbe:
    probe = create("display", {"url": url, "timeout_s": 0.2, **options})
    assert isinstance(probe, DisplayProbe)
    return probe


async def test_reads_the_board_status_as_display_fields(board: DisplayBoardSimulator) -> None:
    board.fail_modules(2)
    board.make_sync_stale(600)
    probe = make_probe(board.url)
    try:
        values = await probe.read()
    finally:
        await probe.close()
    assert values["power"] is True
    assert values["brightness"] == 80
    assert values["content_id"] in board.contents
    assert (values["failed_modules"], values["modules_total"]) == (2, 48)
    assert values["temp_c"] == pytest.approx(38.5)
    assert values["source_sync_age_s"] == pytest.approx(600, abs=2)
    assert values["blank"] is False
    assert values["frozen"] is False


async def test_never_synced_board_has_no_sync_age(board: DisplayBoardSimulator) -> None:
    board.make_never_synced()
    probe = make_probe(board.url)
    try:
        assert (await probe.read())["source_sync_age_s"] is None
    finally:
        await probe.close()


async def test_black_screen_is_blank_with_fault_edges(board: DisplayBoardSimulator) -> None:
    probe = make_probe(board.url)
    try:
        await probe.read()
        board.set_blank(True)
        assert (await probe.read())["blank"] is True
        board.set_blank(False)
        assert (await probe.read())["blank"] is False
    finally:
        await probe.close()
    events = [(e["event"], e["code"]) for e in probe.drain_events()]
    assert events == [("fault_start", "blank"), ("fault_end", "blank")]


async def test_frozen_picture_is_detected_after_frozen_after_s(board: DisplayBoardSimulator) -> None:
    probe = make_probe(board.url, frozen_after_s=0.3)
    try:
        await probe.read()
        board.freeze()
        assert (await probe.read())["frozen"] is False
        await asyncio.sleep(0.4)
        assert (await probe.read())["frozen"] is True
        board.unfreeze()
        assert (await probe.read())["frozen"] is False
    finally:
        await probe.close()
    codes = [(e["event"], e["code"]) for e in probe.drain_events()]
    assert codes == [("fault_start", "frozen"), ("fault_end", "frozen")]


async def test_a_moving_picture_is_never_frozen(board: DisplayBoardSimulator) -> None:
    probe = make_probe(board.url, frozen_after_s=0.1)
    try:
        for _ in range(3):
            await asyncio.sleep(0.12)
            assert (await probe.read())["frozen"] is False
    finally:
        await probe.close()


async def test_test_pattern_is_shown_and_not_mistaken_for_a_frozen_screen(
    board: DisplayBoardSimulator,
) -> None:
    probe = make_probe(board.url, frozen_after_s=0.1)
    try:
        result = await probe.show_test_pattern("grid", 2)
        assert result["content_id"] == "TEST:grid"
        assert result["seconds"] == 2
        await probe.read()
        await asyncio.sleep(0.2)
        assert (await probe.read())["frozen"] is False
    finally:
        await probe.close()


async def test_test_pattern_refused_while_screen_off_is_a_probe_error(board: DisplayBoardSimulator) -> None:
    board.set_power(False)
    probe = make_probe(board.url)
    try:
        with pytest.raises(ProbeError, match="refused show_test_pattern: powered_off"):
            await probe.show_test_pattern("white", 5)
        values = await probe.read()
    finally:
        await probe.close()
    assert values["power"] is False
    assert values["blank"] is True
    assert values["frozen"] is False


async def test_unknown_pattern_is_refused_before_the_wire(board: DisplayBoardSimulator) -> None:
    probe = make_probe(board.url)
    with pytest.raises(ProbeError, match="unknown test pattern 'plaid'"):
        await probe.show_test_pattern("plaid", 5)
    await probe.close()
    assert board.counts["requests"] == 0


async def test_set_brightness_reaches_the_board(board: DisplayBoardSimulator) -> None:
    probe = make_probe(board.url)
    try:
        assert await probe.set_brightness(35) == {"brightness": 35}
        assert (await probe.read())["brightness"] == 35
    finally:
        await probe.close()
    assert board.brightness == 35


async def test_unplugged_board_is_a_probe_error_then_recovers(board: DisplayBoardSimulator) -> None:
    probe = make_probe(board.url)
    try:
        board.unplugged = True
        with pytest.raises(ProbeError, match=r"display at .*status_request: no answer within 0\.2 s"):
            await probe.read()
        board.unplugged = False
        assert (await probe.read())["power"] is True
    finally:
        await probe.close()
    assert probe.errors == 1


@pytest.mark.parametrize("kind", ["random", "corrupt"])
async def test_garbage_from_the_board_is_a_probe_error(board: DisplayBoardSimulator, kind: str) -> None:
    board.garbage_rate, board.garbage_kind = 1.0, kind
    probe = make_probe(board.url)
    try:
        with pytest.raises(ProbeError, match="garbage on the line"):
            await probe.read()
    finally:
        await probe.close()


async def test_busy_board_nak_is_a_probe_error(board: DisplayBoardSimulator) -> None:
    board.nak_error = df.ERR_BUSY
    probe = make_probe(board.url)
    try:
        with pytest.raises(ProbeError, match="refused status_request: busy"):
            await probe.read()
    finally:
        await probe.close()
