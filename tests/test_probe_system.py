"""System probe: reboot reason from markers and injected kernel files, disk, temperature, mains."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.probes import create
from agent.probes.system import (
    CLEAN_SHUTDOWN_MARKER,
    RUNNING_MARKER,
    SystemProbe,
    write_clean_shutdown,
)


class Board:
    """Fake /proc and /sys files of a board, and the agent's state dir, under tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.boot_id = root / "boot_id"
        self.watchdog = root / "bootstatus"
        self.temp = root / "temp"
        self.uptime = root / "uptime"
        self.mains = root / "mains"
        self.boot("boot-1")
        self.uptime.write_text("12345.67 40000.00\n")

    def boot(self, boot_id: str, watchdog: str = "0") -> None:
        self.boot_id.write_text(boot_id + "\n")
        self.watchdog.write_text(watchdog + "\n")

    async def start_agent(self, **options: object) -> SystemProbe:
        section = {
            "state_dir": str(self.state_dir),
            "boot_id_path": str(self.boot_id),
            "watchdog_status_path": str(self.watchdog),
            "temp_path": str(self.temp),
            "uptime_path": str(self.uptime),
            **options,
        }
        probe = create("system", section)
        assert isinstance(probe, SystemProbe)
        await probe.start()
        return probe


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(tmp_path)


async def reason_after(board: Board) -> str:
    reason = (await (await board.start_agent()).read())["reboot_reason"]
    assert isinstance(reason, str)
    return reason


async def test_first_start_on_a_new_board_is_first_boot(board: Board) -> None:
    probe = await board.start_agent()
    assert (await probe.read())["reboot_reason"] == "first_boot"
    assert (board.state_dir / RUNNING_MARKER).read_text() == "boot-1"
    assert probe.boot_id == "boot-1"
    [event] = probe.drain_events()
    assert (event["event"], event["code"], event["detail"]) == (
        "info",
        "agent_start",
        "reboot_reason=first_boot",
    )


async def test_agent_stopped_with_sigterm_then_started_is_clean(board: Board) -> None:
    await board.start_agent()
    write_clean_shutdown(board.state_dir, "boot-1")  # what the runtime does on SIGTERM
    assert await reason_after(board) == "clean"
    assert not (board.state_dir / CLEAN_SHUTDOWN_MARKER).exists()  # consumed at start


async def test_clean_shutdown_then_reboot_is_clean(board: Board) -> None:
    await board.start_agent()
    write_clean_shutdown(board.state_dir)
    board.boot("boot-2")
    assert await reason_after(board) == "clean"


async def test_new_boot_without_clean_marker_is_power_loss(board: Board) -> None:
    await board.start_agent()
    board.boot("boot-2")
    assert await reason_after(board) == "power_loss"


async def test_new_boot_with_watchdog_bootstatus_is_watchdog(board: Board) -> None:
    await board.start_agent()
    board.boot("boot-2", watchdog="32")  # WDIOF_CARDRESET
    assert await reason_after(board) == "watchdog"


async def test_same_boot_with_stale_running_marker_is_agent_crash(board: Board) -> None:
    await board.start_agent()  # and then the agent dies: no clean marker
    assert await reason_after(board) == "agent_crash"


async def test_reason_survives_a_later_crash_free_restart_sequence(board: Board) -> None:
    await board.start_agent()
    board.boot("boot-2")
    assert await reason_after(board) == "power_loss"
    write_clean_shutdown(board.state_dir)
    assert await reason_after(board) == "clean"
    assert await reason_after(board) == "agent_crash"


async def test_missing_watchdog_file_means_power_loss(board: Board) -> None:
    await board.start_agent()
    board.boot("boot-2")
    board.watchdog.unlink()
    assert await reason_after(board) == "power_loss"


async def test_reads_uptime_temperature_and_disk(board: Board) -> None:
    board.temp.write_text("51234\n")
    values = await (await board.start_agent()).read()
    assert values["uptime_s"] == pytest.approx(12345.7)
    assert values["temp_c"] == pytest.approx(51.234)
    assert values["disk_free_mb"] > 0
    assert values["disk_ro"] is False
    assert values["mains"] is None


async def test_unreadable_or_absurd_temperature_is_none(board: Board) -> None:
    probe = await board.start_agent()
    assert (await probe.read())["temp_c"] is None  # no thermal zone on this board
    board.temp.write_text("garbage")
    assert (await probe.read())["temp_c"] is None
    board.temp.write_text("999000")
    assert (await probe.read())["temp_c"] is None


@pytest.mark.parametrize(
    ("content", "active_low", "expected"),
    [
        ("1", False, True),
        ("0", False, False),
        ("0", True, True),
        ("battery", False, False),
        ("??", False, None),
    ],
)
async def test_mains_from_a_gpio_value_file(
    board: Board, content: str, active_low: bool, expected: object
) -> None:
    board.mains.write_text(content + "\n")
    probe = await board.start_agent(mains_path=str(board.mains), mains_active_low=active_low)
    assert (await probe.read())["mains"] is expected


async def test_write_probe_finds_a_directory_that_cannot_take_files(board: Board, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = await board.start_agent(disk_path=str(disk), write_probe=True)
    assert (await probe.read())["disk_ro"] is False
    assert list(disk.iterdir()) == []  # the probe file is cleaned up
    # A directory where the probe file should go stands in for a refused write (tests run as root,
    # so permissions cannot simulate it).
    (disk / ".tincoso-write-probe").mkdir()
    assert (await probe.read())["disk_ro"] is True


async def test_missing_disk_path_is_none_not_an_error(board: Board, tmp_path: Path) -> None:
    probe = await board.start_agent(disk_path=str(tmp_path / "nowhere"))
    values = await probe.read()
    assert values["disk_free_mb"] is None
    assert values["disk_ro"] is False


def test_state_dir_is_required() -> None:
    with pytest.raises(ValueError, match=r"probes\.system\.state_dir is required"):
        create("system", {})
