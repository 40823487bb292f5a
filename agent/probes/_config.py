"""Typed access to one probe's config section, with errors that name the key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProbeConfig:
    """Read options of ``[probes.<name>]``; a wrong type raises ``ValueError`` naming the key.

    Args:
        name: the probe's name, used in error messages.
        section: the config section (a TOML table).
    """

    def __init__(self, name: str, section: Mapping[str, Any]) -> None:
        if not isinstance(section, Mapping):
            raise ValueError(f"probes.{name} must be a table, got {type(section).__name__}")
        self.name = name
        self.section = section

    def _where(self, key: str) -> str:
        return f"probes.{self.name}.{key}"

    def string(self, key: str, default: str | None = None) -> str | None:
        """An optional string option."""
        value = self.section.get(key, default)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{self._where(key)} must be a string, got {type(value).__name__}")
        return value

    def required_string(self, key: str) -> str:
        """A string option that must be present and non-empty."""
        value = self.string(key)
        if not value:
            raise ValueError(f"{self._where(key)} is required")
        return value

    def number(self, key: str, default: float, lo: float | None = None, hi: float | None = None) -> float:
        """A number option within ``lo..hi``."""
        value = self.section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self._where(key)} must be a number, got {type(value).__name__}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"{self._where(key)} must be in {lo}..{hi}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        """An integer option within ``lo..hi``."""
        value = self.section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{self._where(key)} must be an integer, got {type(value).__name__}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"{self._where(key)} must be in {lo}..{hi}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """A true/false option."""
        value = self.section.get(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{self._where(key)} must be true or false, got {type(value).__name__}")
        return value
