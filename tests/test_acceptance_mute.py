"""An acceptance run mutes the technicians' alerts about the device under test, and only it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.acceptance import profile as profiles
from backend.cli import main as tincoso
from backend.cli.acceptance_mute import REASON
from backend.localservices import LocalMosquitto
from backend.maintenance import MaintenanceStore, muted_during

DEVICE = "vn-trangxa-loa-01"


def test_the_window_covers_the_block_then_a_short_tail(tmp_path: Path) -> None:
    store = MaintenanceStore(tmp_path / "maintenance.json")
    now = [1000.0]
    with muted_during(store, DEVICE, "test", longest_s=3600, tail_s=300, clock=lambda: now[0]) as window:
        assert store.muting(DEVICE, "trang-xa", 1500) == window  # a crash here leaves an end
        assert store.muting("vn-trangxa-loa-02", "trang-xa", 1500) is None
        now[0] = 1200.0
    [after] = store.windows()
    assert (after.start, after.end) == (1000.0, 1500.0)
    with pytest.raises(RuntimeError), muted_during(store, DEVICE, "test", clock=lambda: 2000.0):
        raise RuntimeError("the run broke")
    assert store.windows()[-1].end == 2300.0


def test_acceptance_run_opens_a_maintenance_window_for_the_device(
    fresh_mosquitto: Callable[..., LocalMosquitto], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = fresh_mosquitto()
    config = tmp_path / "backend.toml"
    config.write_text(f'[mqtt]\nurl = "{broker.url}"\n[monitor]\nstate_dir = "state"\n', encoding="utf-8")
    started = time.time()
    # Nobody answers for the device: the run fails fast, yet the window was open throughout.
    profile = str(profiles.PROFILES_DIR / "speaker_cluster.toml")
    args = [
        "acceptance",
        DEVICE,
        "--config",
        str(config),
        "--profile",
        profile,
        "--out",
        str(tmp_path / "out"),
    ]
    code = tincoso(args)
    ended = time.time()
    assert code == 2, capsys.readouterr()
    [window] = json.loads((tmp_path / "state" / "maintenance.json").read_text(encoding="utf-8"))
    assert (window["target"], window["name"], window["reason"]) == ("device", DEVICE, REASON)
    assert started <= window["start"] <= ended
    # Cut to five minutes after the run's end (not the hour it was opened with).
    assert started + 300 <= window["end"] <= ended + 300
