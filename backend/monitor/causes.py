"""Why a device went dark: the likely cause of an offline episode, with the evidence that decided.

The monitor keeps each device's last readings from before it went silent; they often say
why: the heartbeat's ``mains`` flag (a controller on a small UPS reports "mains lost" and
keeps running on battery until it dies), the power meter's supply voltage falling to 0 V,
the modem's signal fading or its registration lost, a read-only disk or a run of reboots.
The first rule that matches decides, in that order: power first (a dead mains also takes
the modem down), then the device, then the cellular link. Nothing matching is ``unknown``.

The text is Vietnamese, for the technician: "Nghi mất điện lưới: điện áp nguồn về 0 V lúc 17:02".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend.monitor.state import DeviceState
from backend.registry import LOCAL_TZ

__all__ = ["CAUSES", "Cause", "classify", "confirm", "note", "refine"]

CAUSES = ("mains", "device", "cellular", "unknown")
CELLULAR = ("5g", "4g", "3g", "2g")
# Below this the supply is gone (the PZEM reads 0 V without mains; 230 V nominal).
MAINS_LOST_V = 100.0
WEAK_SIGNAL_DBM = -105.0
REBOOT_WINDOW_S = 1800.0

_TITLE = {
    "mains": "Nghi mất điện lưới",
    "device": "Nghi lỗi thiết bị",
    "cellular": "Nghi mất sóng di động",
    "unknown": "Chưa rõ nguyên nhân",
}


@dataclass(frozen=True)
class Cause:
    """The likely cause of one outage.

    Attributes:
        code: One of `CAUSES`.
        evidence: Which reading decided (``mains_flag``, ``supply_voltage``, ``disk_ro``,
            ``reboots``, ``signal``, ``no_network``, ``reboot_reason``, ``no_reboot``, ``none``).
        text: What the technician reads (Vietnamese).
    """

    code: str
    evidence: str
    text: str

    @property
    def detail(self) -> str:
        """The text without its title ("điện áp nguồn về 0 V lúc 17:02...")."""
        return self.text.split(": ", 1)[-1]


def _at(ts: float | None) -> str:
    return "" if ts is None else " lúc " + datetime.fromtimestamp(ts, LOCAL_TZ).strftime("%H:%M")


def note(st: DeviceState, msg: Mapping[str, Any], now: float) -> None:
    """Remember the signs of a coming outage in one fresh live message of ``st``.

    The readings before the end are kept in ``st`` anyway; this adds *when* each sign
    began, so the alert can say "điện áp về 0 V lúc 17:02, chạy pin dự phòng 40 s rồi tắt".
    A new boot starts with no signs.
    """
    signs = st.signs
    kind = msg.get("kind")
    if kind == "birth" and msg.get("boot_id") != st.boot_id:
        signs.clear()
    elif kind == "heartbeat":
        _flag(signs, "mains_lost", now, msg.get("mains") is False, msg.get("mains") is None)
        _flag(signs, "disk_ro", now, bool(msg.get("disk_ro")), False)
        signal = msg.get("signal_dbm")
        if msg.get("net_type") in CELLULAR:
            signs["cellular"] = now
            weak = signal is None or float(signal) < WEAK_SIGNAL_DBM
            _flag(signs, "signal_weak", now, weak, False)
    elif kind == "audio":
        volts = msg.get("amp_voltage_v")
        if volts is not None:
            _flag(signs, "voltage_lost", now, float(volts) < MAINS_LOST_V, False)


def _flag(signs: dict[str, float], name: str, now: float, present: bool, unknown: bool) -> None:
    if unknown:
        return
    if present:
        signs.setdefault(name, now)
    else:
        signs.pop(name, None)


def classify(st: DeviceState, now: float) -> Cause:
    """The likely cause of ``st``'s current outage from its last readings."""
    hb = st.heartbeat or {}
    audio = st.audio or {}
    heard = st.down_since
    volts = audio.get("amp_voltage_v")
    low = volts is not None and volts < MAINS_LOST_V
    if hb.get("mains") is False or low:
        flag = hb.get("mains") is False
        return _mains(st, "mains_flag" if flag else "supply_voltage", volts if low else None)
    if hb.get("disk_ro"):
        return _cause("device", "disk_ro", "bộ nhớ của bộ điều khiển chỉ đọc trước khi mất kết nối")
    reboots = len([t for t in st.boots if now - t <= REBOOT_WINDOW_S])
    if reboots >= 2:
        return _cause("device", "reboots", f"bộ điều khiển khởi động lại {reboots} lần trong 30 phút")
    signal = hb.get("signal_dbm")
    net = hb.get("net_type")
    if net in CELLULAR and (signal is None or signal < WEAK_SIGNAL_DBM):
        shown = "không còn sóng" if signal is None else f"sóng yếu {signal:g} dBm"
        since = st.signs.get("signal_weak", heard)
        return _cause("cellular", "signal", f"{shown}{_at(since)} trước khi mất kết nối")
    # "unknown" is also what a device without a modem reports: only a device seen on a
    # cellular network before counts as deregistered.
    if net == "unknown" and hb and "cellular" in st.signs:
        return _cause("cellular", "no_network", f"modem mất đăng ký mạng{_at(heard)}")
    return _cause("unknown", "none", "không thấy dấu hiệu mất điện, lỗi thiết bị hay mất sóng trước đó")


def _mains(st: DeviceState, evidence: str, volts: float | None) -> Cause:
    lost = [st.signs[k] for k in ("mains_lost", "voltage_lost") if k in st.signs]
    since = min(lost) if lost else st.down_since
    shown = "thiết bị báo mất điện lưới" if volts is None else f"điện áp nguồn về {volts:g} V"
    detail = f"{shown}{_at(since)}"
    if lost and st.down_since is not None and st.down_since - min(lost) >= 1.0:
        detail += f", thiết bị chạy pin dự phòng {st.down_since - min(lost):.0f} s rồi tắt"
    elif volts is None:
        detail += ", chạy nguồn dự phòng rồi tắt"
    return _cause("mains", evidence, detail)


def _cause(code: str, evidence: str, detail: str) -> Cause:
    return Cause(code, evidence, f"{_TITLE[code]}: {detail}")


def refine(cause: Cause, *, rebooted: bool, reboot_reason: str | None, replayed: int = 0) -> Cause:
    """The cause once the device is back and says how it comes back.

    Args:
        cause: What its last readings suggested when it went dark.
        rebooted: It returned with a new boot id.
        reboot_reason: The ``reboot_reason`` of its first fresh heartbeat after the return.
        replayed: Readings from its queue (taken during the outage) that arrived meanwhile.
    """
    if not rebooted:
        if cause.code == "mains":
            return cause  # on the UPS through the whole cut: still the grid's
        queue = f", {replayed} bản tin trong hàng đợi được gửi lại" if replayed else ""
        return _cause(
            "cellular",
            "no_reboot",
            f"thiết bị không khởi động lại trong thời gian mất kết nối{queue}: đường truyền bị mất",
        )
    if reboot_reason == "power_loss":
        return _cause("mains", "reboot_reason", "thiết bị khởi động lại sau khi mất nguồn (power_loss)")
    if reboot_reason in ("watchdog", "agent_crash"):
        return _cause("device", "reboot_reason", f"bộ điều khiển khởi động lại do lỗi ({reboot_reason})")
    return cause


def confirm(cause: Cause, later: Cause) -> Cause:
    """``cause`` with what the return added, when ``later`` agrees with it on the code."""
    if later.code != cause.code or later.evidence == cause.evidence:
        return cause
    return Cause(
        cause.code, f"{cause.evidence}+{later.evidence}", f"{cause.text}; khi trở lại: {later.detail}"
    )
