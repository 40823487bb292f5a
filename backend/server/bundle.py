"""Per-device bundles for a district server: what an installer copies to the controller.

``tincoso provision --server-config server.toml DEVICE_ID`` writes, beside the device's
snippet, ``devices/<id>/bundle/``:

- ``agent.toml``: the agent's config with this server's name and port, TLS on, the CA and
  the password file at the places ``agent/README.md`` installs them (``/etc/tincoso/``),
  and the device's kind from the registry; the probes are then set as in
  ``agent/examples/<kind>.toml``;
- ``ca.pem``: the district CA that signed the broker's certificate (absent when the
  operator supplied a publicly trusted certificate: the system's CAs verify it);
- ``mqtt-password``: the device's password (0600);
- ``INSTALL.txt``: the copy commands.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

from backend.registry import RegistryError, load_registry
from backend.server.settings import ServerConfig
from backend.server.tomltext import dumps

__all__ = ["AGENT_ETC", "write_bundle"]

AGENT_ETC = "/etc/tincoso"  # where agent/README.md installs the agent's files

_PROBES = {
    "speaker_cluster": ("system", "audio", "power_meter", "modem"),
    "eboard": ("system", "display", "modem"),
    "district_led": ("system", "display"),
}


def _kind(config: ServerConfig, device_id: str) -> str:
    try:
        device = load_registry(config.registry).devices.get(device_id)
    except (OSError, RegistryError):
        device = None
    return device.kind if device is not None else "speaker_cluster"


def agent_config(config: ServerConfig, device_id: str, kind: str, *, with_ca: bool) -> str:
    """The text of the device's ``agent.toml``."""
    mqtt: dict[str, object] = {
        "host": config.names[0] if config.names else config.addresses[0],
        "port": config.device_port,
        "tls": True,
        "username": device_id,
        "password_file": f"{AGENT_ETC}/mqtt-password",
    }
    if with_ca:
        mqtt["cafile"] = f"{AGENT_ETC}/ca.pem"
    document = {
        "device": {"id": device_id, "kind": kind, "state_dir": "/var/lib/tincoso-agent"},
        "mqtt": mqtt,
        "clock": {"sync_check": "adjtimex"},
        "probes": {"system": {}},
    }
    others = [p for p in _PROBES.get(kind, ("system",)) if p != "system"]
    header = (
        f"tincoso-agent config of {device_id} for the district server {mqtt['host']}, "
        "made by `tincoso provision --server-config`.\n"
        f"Add the probes of agent/examples/{kind}.toml ({', '.join(others) or 'none'}) with this "
        "controller's ports, then: tincoso-agent check-config --config /etc/tincoso/agent.toml"
    )
    return dumps(document, header=header)


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_bundle(config: ServerConfig, device_id: str) -> Path:
    """Write the bundle of a provisioned device; return its directory."""
    device_dir = config.secrets_dir / "devices" / device_id
    snippet = tomllib.loads((device_dir / "agent-mqtt.toml").read_text(encoding="utf-8"))["mqtt"]
    bundle = device_dir / "bundle"
    bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
    with_ca = not config.cert
    if with_ca:
        shutil.copyfile(config.secrets_dir / "ca" / "ca.crt", bundle / "ca.pem")
    _write(
        bundle / "agent.toml",
        agent_config(config, device_id, _kind(config, device_id), with_ca=with_ca),
        0o644,
    )
    _write(bundle / "mqtt-password", str(snippet["password"]), 0o600)
    files = "agent.toml mqtt-password" + (" ca.pem" if with_ca else "")
    _write(
        bundle / "INSTALL.txt",
        f"# On the controller of {device_id} (see agent/README.md, 'Installing the agent'):\n"
        f"sudo install -d -m 0755 {AGENT_ETC}\n"
        f"cd bundle && sudo cp {files} {AGENT_ETC}/\n"
        f"sudo chown tincoso {AGENT_ETC}/mqtt-password && sudo chmod 600 {AGENT_ETC}/mqtt-password\n"
        f"sudo -u tincoso /opt/tincoso/venv/bin/tincoso-agent check-config --config {AGENT_ETC}/agent.toml\n",
        0o644,
    )
    return bundle
