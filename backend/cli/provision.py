"""``tincoso provision``: per-device broker credentials, ACLs and certificates.

    tincoso provision DEVICE_ID [DEVICE_ID ...]      create (idempotent)
    tincoso provision --registry registry.yaml       every device of the registry
    tincoso provision DEVICE_ID --rotate             new password (and certificate)
    tincoso provision DEVICE_ID --revoke             the device can no longer connect

Secrets are written to files readable by their owner only and never printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.localservices import LocalServices
from backend.provision.store import ProvisionError, ProvisionStore, reload_broker
from backend.server.settings import ServerConfig

DEFAULT_SECRETS = "var/secrets"


def register(subparsers: Subparsers) -> None:
    """Add the ``provision`` command."""
    parser = subparsers.add_parser(
        "provision",
        help="create, rotate or revoke device credentials",
        description="Create per-device MQTT credentials: a Mosquitto password-file entry, ACL rules "
        "confining the device to its own topics, an agent config snippet and optionally a TLS client "
        "certificate from the district CA. A running local broker (tincoso services) is reloaded.",
    )
    parser.add_argument("devices", nargs="*", metavar="DEVICE_ID", help="device ids to provision")
    parser.add_argument("--registry", type=Path, help="provision every device in this registry file")
    parser.add_argument(
        "--dir", type=Path, default=Path(DEFAULT_SECRETS), help=f"secrets dir ({DEFAULT_SECRETS})"
    )
    parser.add_argument("--client-cert", action="store_true", help="also issue a TLS client certificate")
    parser.add_argument("--broker-host", default="127.0.0.1", help="broker host written into snippets")
    parser.add_argument(
        "--broker-port",
        type=int,
        help="broker device port for snippets (default: the secure local broker's, else 8883)",
    )
    parser.add_argument(
        "--services-dir", type=Path, default=Path("var"), help="local services to reload (var)"
    )
    parser.add_argument(
        "--server-config",
        type=Path,
        help="a district server's server.toml: its secrets dir, name and port, and a bundle per device "
        "(agent.toml, ca.pem, mqtt-password) to copy to the controller",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--rotate", action="store_true", help="replace the credentials of DEVICE_ID")
    action.add_argument("--revoke", action="store_true", help="revoke DEVICE_ID")
    parser.set_defaults(handler=provision)


def _device_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.devices)
    if args.registry is not None:
        from backend.registry import RegistryError, load_registry

        try:
            ids += sorted(load_registry(args.registry).devices)
        except (OSError, RegistryError) as exc:
            raise CliError(f"cannot read registry {args.registry}: {exc}") from exc
    if not ids:
        raise CliError("name at least one DEVICE_ID or give --registry FILE")
    return ids


def provision(args: argparse.Namespace) -> int:
    """Carry out one provisioning request and say what was written where."""
    ids = _device_ids(args)
    local = LocalServices.load(args.services_dir) if (args.services_dir / "services.json").exists() else None
    port = args.broker_port or (local.device_port if local is not None else None) or 8883
    server = _server(args.server_config) if args.server_config is not None else None
    if server is not None:
        args.dir, args.broker_host, port = server.secrets_dir, server.cert_hosts[0], server.device_port
    store = ProvisionStore(args.dir, broker_host=args.broker_host, broker_port=port)
    try:
        for number, device_id in enumerate(ids, start=1):
            progress = f"[{number}/{len(ids)}] " if len(ids) > 1 else ""
            if args.revoke:
                store.revoke(device_id)
                print(f"{progress}{device_id}: revoked")
            elif args.rotate:
                creds = store.rotate(device_id)
                print(f"{progress}{device_id}: new credentials in {creds.snippet}")
            else:
                creds = store.provision(device_id, client_cert=args.client_cert)
                extra = f", certificate {creds.client_cert}" if creds.client_cert else ""
                print(f"{progress}{device_id}: agent config snippet {creds.snippet}{extra}")
            if server is not None and not args.revoke:
                from backend.server.bundle import write_bundle

                print(f"{progress}{device_id}: bundle for the controller {write_bundle(server, device_id)}")
    except ProvisionError as exc:
        raise CliError(str(exc)) from exc
    print(f"Mosquitto password file: {store.passwd_path}; ACL: {store.acl_path}")
    if server is not None:
        from backend.server.install import give_to_service_user

        give_to_service_user(server)
        print("Reload the broker to apply: systemctl reload tincoso-mosquitto")
    if local is not None and local.mosquitto.pid is not None:
        reload_broker(local.mosquitto.pid)
        print(f"Reloaded the local broker (pid {local.mosquitto.pid}).")
    return EXIT_OK


def _server(path: Path) -> ServerConfig:
    from backend.server.settings import ServerConfigError, load_server_config

    try:
        return load_server_config(path)
    except ServerConfigError as exc:
        raise CliError(str(exc)) from exc
