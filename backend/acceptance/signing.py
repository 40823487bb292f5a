"""Ed25519 signatures on acceptance reports: keys held by the signing party, signatures beside the JSON.

A hash alone proves nothing: anyone who edits ``report.json`` can write a new hash. A
signature made with a private key that only the signing party (the vendor, or the
district's acceptance officer) holds cannot be redone by someone else. The signature
covers the exact bytes of ``report.json`` and is written to ``report.json.sig`` together
with the public key, so the report travels with what is needed to check it. The public
key shipped alongside proves nothing by itself (a forger would ship his own), so
:func:`verify_signature` checks it against a *pinned* key: the signing party's public key
file, or its fingerprint printed on the signed paper copy.

Keys: ``tincoso acceptance keygen --out vendor.key`` writes the private key (PKCS#8 PEM,
file mode 0600, never overwritten) and ``vendor.pub`` (the public key, PEM). A private
key file that the group or others can read is refused, as ``ssh`` does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALGORITHM",
    "SignatureCheck",
    "SigningError",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "sign_file",
    "verify_signature",
]

ALGORITHM = "Ed25519"
SIG_SUFFIX = ".sig"


class SigningError(ValueError):
    """A key or signature file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking ``report.json.sig``.

    Attributes:
        valid: the signature matches the report's bytes under the key shipped with it.
        fingerprint: that key's fingerprint (SHA-256 of the raw public key, hex).
        pinned: a pinned key or fingerprint was given and the shipped key is that key;
            None when nothing was pinned.
    """

    valid: bool
    fingerprint: str
    pinned: bool | None

    @property
    def ok(self) -> bool:
        """Valid and signed by the pinned key."""
        return self.valid and self.pinned is True


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, lower-case hex (what the paper copy prints)."""
    return hashlib.sha256(_raw(public)).hexdigest()


def generate_key(private_path: Path) -> tuple[Path, str]:
    """Make a key pair: ``private_path`` (mode 0600) and ``private_path.pub``.

    Returns:
        The public key file and the key's fingerprint.

    Raises:
        SigningError: either file exists already (a key is never overwritten).
    """
    public_path = private_path.with_suffix(".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise SigningError(f"{path} exists already; a signing key is never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public_path, fingerprint(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key made by :func:`generate_key`.

    Raises:
        SigningError: missing, readable by group or others, or not an Ed25519 private key.
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningError(
            f"signing key {path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path} is not an Ed25519 key (make one with `tincoso acceptance keygen`)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a public key (PEM, as ``keygen`` writes it).

    Raises:
        SigningError: missing, or not an Ed25519 public key.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read the public key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path} is not an Ed25519 public key")
    return key


def signature_path(report: Path) -> Path:
    """Where the signature of ``report`` lives: ``report.json.sig``."""
    return report.with_name(report.name + SIG_SUFFIX)


def sign_file(report: Path, key: Ed25519PrivateKey) -> tuple[Path, str]:
    """Sign the exact bytes of ``report``; write ``report.sig``; return it and the fingerprint."""
    public = key.public_key()
    document = {
        "algorithm": ALGORITHM,
        "file": report.name,
        "public_key": base64.b64encode(_raw(public)).decode("ascii"),
        "fingerprint": fingerprint(public),
        "signature": base64.b64encode(key.sign(report.read_bytes())).decode("ascii"),
    }
    path = signature_path(report)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path, document["fingerprint"]


def _read_signature(path: Path) -> tuple[Ed25519PublicKey, bytes]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SigningError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise SigningError(f"{path} is not a signature file (not JSON)") from None
    if not isinstance(document, dict) or document.get("algorithm") != ALGORITHM:
        raise SigningError(f"{path} is not an {ALGORITHM} signature file")
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(document["public_key"], validate=True))
        signature = base64.b64decode(document["signature"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise SigningError(f"{path}: public_key and signature must be base64 ({exc})") from None
    return public, signature


def verify_signature(
    report: Path, *, pinned_key: Ed25519PublicKey | None = None, pinned_fingerprint: str | None = None
) -> SignatureCheck:
    """Check ``report.sig`` against the report's bytes, and its key against the pinned one.

    Raises:
        SigningError: the signature file is missing or unreadable, or the report is unreadable.
    """
    path = signature_path(report)
    if not path.exists():
        raise SigningError(f"{report} has no signature ({path.name} is missing): the report is unsigned")
    public, signature = _read_signature(path)
    try:
        data = report.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read {report}: {exc.strerror or exc}") from None
    try:
        public.verify(signature, data)
        valid = True
    except InvalidSignature:
        valid = False
    shipped = fingerprint(public)
    pinned: bool | None = None
    if pinned_key is not None:
        pinned = _raw(pinned_key) == _raw(public)
    if pinned_fingerprint is not None:
        wanted = pinned_fingerprint.replace(":", "").replace(" ", "").lower()
        pinned = (pinned is not False) and len(wanted) >= 16 and shipped.startswith(wanted)
    return SignatureCheck(valid, shipped, pinned)
