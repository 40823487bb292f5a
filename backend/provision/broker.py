"""A Mosquitto configured the secure way: no anonymous access, TLS, passwords, ACLs.

Two listeners (``per_listener_settings true``):

- the **device listener** (TLS; passwords from ``mosquitto.passwd``, or client certificates
  whose CN becomes the user name) with ``use_username_as_clientid``: a device cannot take
  over another device's MQTT session (and its queued commands) by reusing its client id;
- the **backend listener** (TLS, on 127.0.0.1 only) that accepts only the backend identity,
  whose several connections (ingest workers, monitor) need client ids of their own.

Both use the same ACL file, so a device's confinement does not depend on the listener.
"""

from __future__ import annotations

from pathlib import Path

from backend.localservices import LocalMosquitto
from backend.localservices._process import HOST, free_port
from backend.provision.store import ProvisionStore

__all__ = ["secure_listener_lines", "secure_mosquitto"]


def secure_listener_lines(
    store: ProvisionStore, *, device_port: int, backend_port: int, client_certs: bool = False
) -> list[str]:
    """The listener and authentication part of a secure ``mosquitto.conf``."""
    server_cert, server_key = store.ensure_server_cert([HOST, "localhost"])
    ca = store.ca
    tls = [f"cafile {ca.cert_path}", f"certfile {server_cert}", f"keyfile {server_key}"]
    device = [f"listener {device_port} {HOST}", *tls]
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
    return ["per_listener_settings true", *device, *backend]


def secure_mosquitto(
    root: Path,
    store: ProvisionStore,
    *,
    backend_port: int | None = None,
    device_port: int | None = None,
    client_certs: bool = False,
) -> tuple[LocalMosquitto, int]:
    """A LocalMosquitto whose ``port`` is the backend listener; returns it and the device port."""
    backend_user, backend_password = store.ensure_backend()
    backend_port = backend_port or free_port()
    device_port = device_port or free_port()
    store.broker_port = device_port
    listeners = secure_listener_lines(
        store, device_port=device_port, backend_port=backend_port, client_certs=client_certs
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
