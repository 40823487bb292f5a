"""What ``check-config`` verifies beyond the TOML: the files and devices a config names.

Each check reads, never writes: a CA that does not parse, a password file the agent's
user cannot read, a serial port that is missing or named ``/dev/ttyUSB0`` (which swaps with
the modem's ports between boots), an ALSA card that is not there. A problem is one line
that names the key and the file; a warning is something that works today but will not
survive a reboot or a rotation.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import ssl
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig

# Serial URLs that are not device paths (pyserial's URL handlers).
_URL_SCHEMES = ("socket://", "rfc2217://", "loop://", "spy://", "alt://", "hwgrep://", "cp2110://")
_UNSTABLE_TTY = re.compile(r"^/dev/tty(USB|ACM)\d+$")
_ALSA_CARD = re.compile(r"^(?:plug)?hw:(?:CARD=)?([^,]+)")


class Findings:
    """Problems (the config will not work) and warnings (it works, but fragile)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, line: str) -> None:
        self.problems.append(line)

    def warning(self, line: str) -> None:
        self.warnings.append(line)


def check_references(config: AgentConfig, *, asound_cards: Path = Path("/proc/asound")) -> Findings:
    """Check every file and device the config refers to, without changing anything."""
    found = Findings()
    _check_mqtt_files(config, found)
    _check_state_dir(config.state_dir, found)
    for name, section in config.probes.items():
        kind = section.get("kind", name)
        if kind in ("power_meter", "modem", "display") and isinstance(section.get("url"), str):
            _check_serial(f"[probes.{name}] url", section["url"], found)
        elif kind == "audio":
            _check_audio(name, section, found, asound_cards)
    for key, argv in (("player", config.player), ("set_volume", config.set_volume)):
        if argv and shutil.which(argv[0]) is None:
            found.warning(f"[commands] {key}: {argv[0]!r} is not installed or not on PATH")
    return found


def _readable_file(key: str, path: str, found: Findings) -> bool:
    p = Path(path)
    if not p.exists():
        found.problem(f"{key} {path}: no such file")
        return False
    if not p.is_file():
        found.problem(f"{key} {path}: not a regular file")
        return False
    if not os.access(p, os.R_OK):
        found.problem(f"{key} {path}: not readable by this user (uid {os.getuid()})")
        return False
    return True


def _check_mqtt_files(config: AgentConfig, found: Findings) -> None:
    ca = config.mqtt_cafile
    if ca is not None and _readable_file("[mqtt] cafile", ca, found):
        try:
            ssl.create_default_context(cafile=ca)
        except (ssl.SSLError, ValueError) as exc:
            found.problem(f"[mqtt] cafile {ca}: not a PEM certificate ({exc})")
    if config.mqtt_cafile and not config.mqtt_tls:
        found.warning("[mqtt] cafile is set but tls = false: the connection uses TLS anyway")
    if config.mqtt_port == 8883 and not (config.mqtt_tls or config.mqtt_cafile):
        found.warning("[mqtt] port 8883 is the MQTT-over-TLS port but tls = false")
    cert, key = config.mqtt_certfile, config.mqtt_keyfile
    if cert is not None and key is not None:
        ok_cert = _readable_file("[mqtt] certfile", cert, found)
        ok_key = _readable_file("[mqtt] keyfile", key, found)
        if ok_cert and ok_key:
            try:
                ssl.create_default_context().load_cert_chain(cert, key)
            except (ssl.SSLError, ValueError) as exc:
                found.problem(f"[mqtt] certfile/keyfile {cert}, {key}: do not load as a pair ({exc})")
    _check_password_file(config, found)


def _check_password_file(config: AgentConfig, found: Findings) -> None:
    path = config.mqtt_password_file
    if path is None:
        if config.mqtt_username is not None and config.mqtt_password is None:
            found.problem("[mqtt] username is set but neither password nor password_file is")
        return
    if not _readable_file("[mqtt] password_file", path, found):
        return
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        found.problem(f"[mqtt] password_file {path}: cannot be read ({exc})")
        return
    if not text:
        found.problem(f"[mqtt] password_file {path}: is empty")
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        found.warning(f"[mqtt] password_file {path}: readable by others (mode {mode & 0o777:o}; chmod 600)")


def _check_state_dir(state_dir: Path, found: Findings) -> None:
    where = f"[device] state_dir {state_dir}"
    if state_dir.exists():
        if not state_dir.is_dir():
            found.problem(f"{where}: not a directory")
        elif not os.access(state_dir, os.W_OK | os.X_OK):
            found.problem(f"{where}: not writable by this user (uid {os.getuid()})")
        return
    parent = next((p for p in state_dir.parents if p.exists()), None)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK):
        # systemd's StateDirectory= creates it at the first start; say so rather than fail.
        found.warning(f"{where}: does not exist yet (systemd's StateDirectory= creates it)")


def _check_serial(key: str, url: str, found: Findings) -> None:
    if url.startswith(_URL_SCHEMES):
        return
    path = Path(url)
    if not path.exists():
        found.problem(f"{key} {url}: no such device")
        return
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        found.problem(f"{key} {url}: {exc.strerror}")
        return
    if not stat.S_ISCHR(mode):
        found.problem(f"{key} {url}: not a character device (a serial port)")
        return
    if not os.access(path, os.R_OK | os.W_OK):
        found.problem(f"{key} {url}: no read/write permission (is the user in group dialout?)")
    if _UNSTABLE_TTY.match(url):
        found.warning(
            f"{key} {url}: this name can change between boots; use /dev/serial/by-id/... "
            "or the udev names /dev/tincoso-* (agent/udev/)"
        )


def _check_audio(name: str, section: dict[str, Any], found: Findings, asound: Path) -> None:
    source = section.get("source")
    if not isinstance(source, str):
        return
    key = f"[probes.{name}] source"
    if source == "arecord" or source.startswith("arecord:"):
        command = section.get("arecord_command", "arecord")
        try:
            program = shlex.split(command)[:1] if isinstance(command, str) else []
        except ValueError:
            program = []  # unclosed quotes: the probe's own validation names them
        if program and shutil.which(program[0]) is None:
            found.problem(
                f"[probes.{name}] arecord_command {command!r}: not installed (apt install alsa-utils)"
            )
        device = source[len("arecord:") :] or section.get("device", "default")
        if isinstance(device, str):
            _check_alsa_card(f"{key} {source}:", device, found, asound)
    elif source.startswith(("file:", "fifo:")):
        path = Path(source[5:])
        if not path.exists():
            found.problem(f"{key} {path}: no such file")


def _check_alsa_card(key: str, device: str, found: Findings, asound: Path) -> None:
    match = _ALSA_CARD.match(device)
    if match is None:
        return  # "default", a name from an asoundrc: only opening it tells
    card = match.group(1)
    if not asound.exists():
        found.problem(f"{key} no ALSA sound card on this machine ({asound} is missing)")
        return
    known = _alsa_cards(asound)
    if card not in known:
        listed = ", ".join(sorted(known)) or "none"
        found.problem(f"{key} no ALSA card {card!r} (cards: {listed}; see arecord -l)")
    elif card.isdigit():
        ids = [c for c in known if not c.isdigit() and (asound / c).resolve() == (asound / f"card{card}")]
        if ids:
            found.warning(f"{key} card numbers can change between boots; name it by id: hw:CARD={ids[0]}")


def _alsa_cards(asound: Path) -> set[str]:
    """Card numbers and ids: ``/proc/asound/card1`` and its symlink ``/proc/asound/Device``."""
    names: set[str] = set()
    for entry in _listdir(asound):
        if entry.startswith("card") and entry[4:].isdigit():
            names.add(entry[4:])
        elif (asound / entry).is_symlink() and os.readlink(asound / entry).startswith("card"):
            names.add(entry)
    return names


def _listdir(path: Path) -> Iterable[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
