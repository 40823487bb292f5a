"""Mosquitto's own password-file format (``mosquitto_passwd``), written without the tool.

Mosquitto 2 stores ``user:$7$ITERATIONS$SALT$HASH``: PBKDF2-HMAC-SHA512 with a 12-byte
salt and a 64-byte key, salt and key in standard base64. ``$6$`` (one round of SHA-512 over
password + salt) is the older format Mosquitto still accepts; we only read it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from pathlib import Path

__all__ = ["PasswordFile", "hash_password", "verify_password"]

ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12
_USER = re.compile(r"^[^:\s]{1,128}$")


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Encode ``password`` the way ``mosquitto_passwd`` does (``$7$`` PBKDF2-SHA512)."""
    if not password:
        raise ValueError("password must not be empty")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, dklen=64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches a ``$7$`` or ``$6$`` entry."""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, key = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
            got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, dklen=len(key))
        elif len(parts) == 4 and parts[1] == "6":
            salt, key = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            got = hashlib.sha512(password.encode("utf-8") + salt).digest()
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(got, key)


class PasswordFile:
    """A Mosquitto password file: read, change entries, write atomically (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, str] = {}
        if path.exists():
            for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not raw.strip() or raw.startswith("#"):
                    continue
                user, sep, encoded = raw.partition(":")
                if not sep or not _USER.match(user):
                    raise ValueError(f"{path} line {number}: expected 'user:$7$...', got {raw[:40]!r}")
                self.entries[user] = encoded

    def set(self, user: str, password: str) -> None:
        """Add or replace ``user`` with a fresh hash of ``password``."""
        if not _USER.match(user):
            raise ValueError(f"user name {user!r} may not contain ':' or spaces")
        self.entries[user] = hash_password(password)

    def remove(self, user: str) -> bool:
        """Remove ``user``; True if it was there."""
        return self.entries.pop(user, None) is not None

    def save(self) -> None:
        """Write the file atomically, readable by its owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        text = "".join(f"{user}:{encoded}\n" for user, encoded in sorted(self.entries.items()))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
