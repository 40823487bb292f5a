"""A Mosquitto configured the secure way: no anonymous access, TLS, passwords, ACLs.

Two listeners (``per_listener_settings true``):

- the **device listener** (TLS; passwords from ``mosquitto.passwd``, or client certificates
  whose CN becomes the user name) with ``use_username_as_clientid``: a device cannot take
  over another device's MQTT session (and its queued commands) by reusing its client id;
- the **backend listener** (TLS, on 127.0.0.1 only) that accepts only the backend identity,
  whose several connections (ingest workers, monitor) need client ids of their own.

Both use the same ACL file, so a device's confinement does not depend on the listener. The
device listener also loads the subscribe guard (``subscribe_guard.py``): the ACL file never
checks SUBSCRIBE, and a device joining the ingest's ``$share`` group would make the broker
drop other devices' telemetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from backend.localservices import LocalMosquitto
from backend.localservices._process import HOST, free_port
from backend.provision.store import ProvisionStore
from backend.provision.subscribe_guard import guard_lines

__all__ = ["secure_listener_lines", "secure_mosquitto"]


def secure_listener_lines(
    store: ProvisionStore,
    *,
    device_port: int,
    backend_port: int,
    client_certs: bool = False,
    subscribe_guard: bool = True,
    build_guard: bool = True,
    device_hosts: Sequence[str] = (HOST,),
    device_tls: tuple[Path, Path] | None = None,
) -> list[str]:
    """The listener and authentication part of a secure ``mosquitto.conf``.

    ``subscribe_guard=False`` leaves the device listener without its guard: only tests that
    show what the guard stops use it; ``build_guard=False`` names the plugin without compiling it
    (the server installer builds it). ``device_hosts`` are the addresses the device listener
    binds (one listener each, same settings); ``device_tls`` is the device listener's own
    certificate and key (a district server's, whose SANs are the names devices use), else the
    loopback one both share.
    """
    server_cert, server_key = store.ensure_server_cert([HOST, "localhost"])
    ca = store.ca
    tls = [f"cafile {ca.cert_path}", f"certfile {server_cert}", f"keyfile {server_key}"]
    guard = guard_lines(store.directory / "broker", build=build_guard) if subscribe_guard else []
    device = [f"listener {device_port} {HOST}", *guard, *tls]
    if client_certs:
        device += ["require_certificate true", "use_identity_as_username true", f"crlfile {ca.crl_path}"]
    else:
        device += [f"password_file {store.passwd_path}"]
    device += ["use_username_as_clientid true", "allow_anonymous false", f"acl_file {store.acl_path}"]
    backend = [
        f"listener {backend_port} {HOST}",
        *tls,
        "allow_anonymous false",
        f"password_file {store.backend_passwd_path}",
        f"acl_file {store.acl_path}",
    ]
    return ["per_listener_settings true", *_device_listeners(device, device_hosts, device_tls), *backend]


def _device_listeners(block: list[str], hosts: Sequence[str], tls: tuple[Path, Path] | None) -> list[str]:
    """The device listener block repeated for each bind address, with its own certificate."""
    swap = {"certfile": tls[0], "keyfile": tls[1]} if tls is not None else {}
    block = [f"{key} {swap[key]}" if (key := line.split(" ", 1)[0]) in swap else line for line in block]
    port = block[0].split()[1]
    return [line for host in hosts for line in (f"listener {port} {host}", *block[1:])]


def secure_mosquitto(
    root: Path,
    store: ProvisionStore,
    *,
    backend_port: int | None = None,
    device_port: int | None = None,
    client_certs: bool = False,
    subscribe_guard: bool = True,
) -> tuple[LocalMosquitto, int]:
    """A LocalMosquitto whose ``port`` is the backend listener; returns it and the device port."""
    backend_user, backend_password = store.ensure_backend()
    backend_port = backend_port or free_port()
    device_port = device_port or free_port()
    store.broker_port = device_port
    listeners = secure_listener_lines(
        store,
        device_port=device_port,
        backend_port=backend_port,
        client_certs=client_certs,
        subscribe_guard=subscribe_guard,
    )
    broker = LocalMosquitto(
        root,
        port=backend_port,
        listeners=listeners,
        allow_anonymous=False,
        cafile=store.ca.cert_path,
        certfile=store.directory / "broker" / "server.crt",
        probe_username=backend_user,
        probe_password=backend_password,
    )
    return broker, device_port
