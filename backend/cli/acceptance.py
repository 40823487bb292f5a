"""``tincoso acceptance``: the remote vendor acceptance test, one device or a whole commune.

tincoso acceptance DEVICE_ID [--profile FILE] [--out DIR] [--lang en] (--config backend.toml | --mqtt-url ...)
tincoso acceptance --commune trang-xa --registry registry.yaml [--out DIR]
tincoso acceptance verify report.json [--key vendor.pub | --fingerprint HEX] [--sha256 HEX]
tincoso acceptance keygen --out vendor.key

With ``--signing-key FILE`` (or ``$TINCOSO_ACCEPTANCE_KEY``) the report is signed with the
signing party's Ed25519 key (``report.json.sig``) and printed to ``report.pdf``. ``verify``
checks the signature when there is one, and the signer's key against ``--key`` or
``--fingerprint`` (the one printed on the signed paper copy).

Exit codes: 0 every check passed (or the report verifies), 2 a check failed (or the report
does not verify), 1 the test could not run (the message says why).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.acceptance.parse import ReportError, read_report
from backend.acceptance.profile import Profile, ProfileError, load_profile
from backend.acceptance.report import build_report, now_stamp, verify, write_report
from backend.acceptance.runner import AcceptanceError, AcceptanceRun, BrokerSettings, run_acceptance
from backend.acceptance.signing import (
    SigningError,
    generate_key,
    load_private_key,
    load_public_key,
    signature_path,
    verify_signature,
)
from backend.acceptance.text import LANGS, check_title, tr
from backend.cli.acceptance_mute import acceptance_window
from backend.cli.common import EXIT_OK, CliError, Subparsers
from backend.cli.context import find_place
from backend.config import ConfigError, load_config
from backend.registry import Device, Registry, RegistryError, load_registry

__all__ = ["EXIT_FAILED", "register"]

EXIT_FAILED = 2
PASSWORD_ENV = "TINCOSO_MQTT_PASSWORD"
SIGNING_KEY_ENV = "TINCOSO_ACCEPTANCE_KEY"


def register(subparsers: Subparsers) -> None:
    """Add ``acceptance``."""
    parser = subparsers.add_parser(
        "acceptance",
        help="remote vendor acceptance test of a device or a commune",
        description="Drive a device over MQTT (report-now, test tone or pattern, reconnect, clock), "
        "judge it against a vendor profile and write report.json, report.json.sha256 and report.html. "
        "`tincoso acceptance verify report.json` recomputes the hash of a saved report.",
    )
    parser.add_argument(
        "target", nargs="*", metavar="DEVICE_ID | verify REPORT", help="device id, or: verify FILE"
    )
    parser.add_argument(
        "--commune", help="test every device of this commune, by id or name (needs a registry)"
    )
    parser.add_argument("--registry", type=Path, help="fleet registry YAML (default: the config's)")
    parser.add_argument("--profile", type=Path, help="acceptance profile TOML (default: per device kind)")
    parser.add_argument("--out", type=Path, default=Path("acceptance"), help="reports go under here")
    parser.add_argument("--lang", choices=LANGS, default="vi", help="report language (default vi)")
    parser.add_argument("--config", type=Path, help="backend.toml: broker settings and registry")
    parser.add_argument("--mqtt-url", help="mqtt://host:port or mqtts://host:port")
    parser.add_argument("--username", help="backend MQTT username")
    parser.add_argument("--password", help=f"backend MQTT password (default: ${PASSWORD_ENV})")
    parser.add_argument("--tls-ca", help="CA certificate of the broker")
    parser.add_argument("--sha256", help="with verify: the hash of the signed copy")
    parser.add_argument(
        "--signing-key",
        type=Path,
        help=f"Ed25519 private key of the signing party (default: ${SIGNING_KEY_ENV}); signs the report",
    )
    parser.add_argument("--key", type=Path, help="with verify: the signer's public key file (pins it)")
    parser.add_argument("--fingerprint", help="with verify: the signer key's fingerprint from the paper copy")
    parser.set_defaults(handler=acceptance)


def acceptance(args: argparse.Namespace) -> int:
    """Run the subcommand; see the module docstring for the exit codes."""
    if args.target[:1] == ["verify"]:
        if len(args.target) != 2:
            raise CliError("usage: tincoso acceptance verify REPORT.json")
        return _verify(Path(args.target[1]), args)
    if args.target[:1] == ["keygen"]:
        if len(args.target) != 1 or args.out == Path("acceptance"):
            raise CliError("usage: tincoso acceptance keygen --out vendor.key")
        return _keygen(args.out)
    if args.commune is not None:
        if args.target:
            raise CliError("give a device id or --commune, not both")
        return _commune(args)
    if len(args.target) != 1:
        raise CliError("give exactly one device id (or --commune X, or verify REPORT.json)")
    registry = _registry(args, required=False)
    device = registry.device(args.target[0]) if registry else None
    run = _run_one(args, args.target[0], device)
    path = _write(args, run, device)
    _print_run(run, args.lang)
    print(f"report: {path}")
    return EXIT_OK if run.passed else EXIT_FAILED


def _keygen(path: Path) -> int:
    try:
        public, fingerprint = generate_key(path)
    except (SigningError, OSError) as exc:
        raise CliError(f"keygen: {exc}") from None
    print(f"private key: {path} (mode 600; keep it with the signing party, never in the report)")
    print(f"public key:  {public}")
    print(f"fingerprint: {fingerprint}")
    return EXIT_OK


def _signing_key(args: argparse.Namespace) -> Ed25519PrivateKey | None:
    path = args.signing_key or (
        Path(os.environ[SIGNING_KEY_ENV]) if os.environ.get(SIGNING_KEY_ENV) else None
    )
    if path is None:
        return None
    try:
        return load_private_key(path)
    except SigningError as exc:
        raise CliError(str(exc)) from None


def _verify(path: Path, args: argparse.Namespace) -> int:
    if signature_path(path).exists() or args.key or args.fingerprint:
        return _verify_signature(path, args)
    return _verify_hash(path, args.sha256)


def _verify_signature(path: Path, args: argparse.Namespace) -> int:
    try:
        pinned = load_public_key(args.key) if args.key else None
        check = verify_signature(path, pinned_key=pinned, pinned_fingerprint=args.fingerprint)
        if check.valid:
            read_report(path)
    except (ReportError, SigningError) as exc:
        raise CliError(str(exc)) from None
    vi = args.lang != "en"
    if not check.valid:
        print(
            f"KHÔNG HỢP LỆ: {path} đã bị sửa sau khi ký (chữ ký không khớp nội dung)"
            if vi
            else f"INVALID: {path} was changed after it was signed (signature does not match)"
        )
        return EXIT_FAILED
    if check.pinned is None:
        print(
            f"CHƯA ĐỐI CHIẾU: chữ ký khớp khóa đi kèm (dấu vân tay {check.fingerprint}) nhưng chưa so với "
            "khóa của bên ký: thêm --key vendor.pub hoặc --fingerprint từ bản giấy đã ký"
            if vi
            else f"NOT PINNED: signature matches the shipped key (fingerprint {check.fingerprint}); "
            "compare it with the signer's: add --key vendor.pub or --fingerprint from the signed paper copy"
        )
        return EXIT_FAILED
    if not check.pinned:
        print(
            f"KHÔNG HỢP LỆ: {path} được ký bằng khóa khác (dấu vân tay {check.fingerprint})"
            if vi
            else f"INVALID: {path} was signed by another key (fingerprint {check.fingerprint})"
        )
        return EXIT_FAILED
    print(
        f"OK: chữ ký Ed25519 hợp lệ, khóa {check.fingerprint}  {path}"
        if vi
        else f"OK Ed25519 signature valid, key {check.fingerprint}  {path}"
    )
    return EXIT_OK


def _verify_hash(path: Path, expected: str | None) -> int:
    try:
        result = verify(path, expected)
    except ReportError as exc:
        raise CliError(str(exc)) from None
    if result.recorded is None:
        print(f"sha256 {result.computed}  {path}: no recorded hash to compare (pass --sha256)")
        return EXIT_FAILED
    verdict = "OK" if result.ok else "MISMATCH"
    print(f"{verdict} sha256 {result.computed}  {path}")
    if not result.ok:
        print(f"recorded  {result.recorded}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _commune(args: argparse.Namespace) -> int:
    registry = _registry(args, required=True)
    assert registry is not None
    devices = registry.devices_in(find_place(registry, args.commune, hamlets=False).commune.id)
    if not devices:
        known = ", ".join(sorted(registry.communes))
        raise CliError(f"commune {args.commune!r} has no devices in the registry (communes: {known})")
    failed = 0
    for n, device in enumerate(devices, 1):
        prefix = f"[{n}/{len(devices)}] {device.id} ({device.kind}, {device.hamlet})"
        print(f"{prefix} ...", flush=True)
        try:
            run = _run_one(args, device.id, device)
        except CliError as exc:
            failed += 1
            print(f"{prefix}: {tr(args.lang, 'fail')}: {exc}", flush=True)
            continue
        path = _write(args, run, device)
        failed += 0 if run.passed else 1
        verdict = tr(args.lang, "pass" if run.passed else "fail")
        passed = sum(1 for c in run.checks if c.passed)
        print(f"{prefix}: {verdict} {passed}/{len(run.checks)} -> {path}", flush=True)
    print(f"{len(devices) - failed}/{len(devices)} {tr(args.lang, 'pass')}")
    return EXIT_OK if not failed else EXIT_FAILED


def _run_one(args: argparse.Namespace, device_id: str, device: Device | None) -> AcceptanceRun:
    profile = _profile(args)
    try:
        with acceptance_window(args.config, device_id):
            return _run(args, device_id, device, profile)
    except (AcceptanceError, ProfileError, ValueError) as exc:
        raise CliError(f"{device_id}: {exc}") from None


def _run(
    args: argparse.Namespace, device_id: str, device: Device | None, profile: Profile | None
) -> AcceptanceRun:
    return asyncio.run(
        run_acceptance(
            _broker(args),
            device_id,
            profile=profile,
            kind_hint=device.kind if device else None,
            lang=args.lang,
        )
    )


def _profile(args: argparse.Namespace) -> Profile | None:
    if args.profile is None:
        return None
    try:
        return load_profile(args.profile)
    except ProfileError as exc:
        raise CliError(str(exc)) from None


def _broker(args: argparse.Namespace) -> BrokerSettings:
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV)
    if args.mqtt_url:
        if args.config is not None:
            raise CliError("give --config or --mqtt-url, not both")
        parts = urlsplit(args.mqtt_url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise CliError(f"--mqtt-url must look like mqtt://host:port, got {args.mqtt_url!r}")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise CliError(f"--mqtt-url has an invalid port: {args.mqtt_url!r}") from None
        return BrokerSettings(
            parts.hostname, port, args.username, password, tls or bool(args.tls_ca), args.tls_ca
        )
    if args.config is None:
        raise CliError("give --config backend.toml or --mqtt-url mqtt://host:port")
    try:
        mqtt = load_config(args.config).mqtt
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return BrokerSettings.from_mqtt(mqtt)


def _registry(args: argparse.Namespace, *, required: bool) -> Registry | None:
    path = args.registry
    if path is None and args.config is not None:
        try:
            configured = load_config(args.config).registry_path
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        path = Path(configured) if configured else None
    if path is None:
        if required:
            raise CliError("--commune needs the fleet registry: give --registry FILE (or a [registry] path)")
        return None
    try:
        return load_registry(path)
    except (RegistryError, OSError) as exc:
        raise CliError(f"registry {path}: {exc}") from None


def _write(args: argparse.Namespace, run: AcceptanceRun, device: Device | None) -> Path:
    directory = args.out / f"{run.device_id}-{now_stamp(run.started_ms)}"
    try:
        files = write_report(
            build_report(run, device, args.lang),
            directory,
            args.lang,
            signing_key=_signing_key(args),
            pdf=True,
        )
    except OSError as exc:
        raise CliError(f"cannot write the report under {directory}: {exc.strerror or exc}") from None
    return files.json_path


def _print_run(run: AcceptanceRun, lang: str) -> None:
    for check in run.checks:
        verdict = tr(lang, "pass" if check.passed else "fail")
        print(f"  {verdict:<10} {check_title(lang, check.name)}: {check.detail}")
    passed = sum(1 for c in run.checks if c.passed)
    print(f"{run.device_id}: {tr(lang, 'pass' if run.passed else 'fail')} {passed}/{len(run.checks)}")
