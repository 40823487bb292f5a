"""A small TOML writer for the configs the server generates (tables, scalars, lists).

Only what ``backend.toml`` needs: nested tables, strings, integers, floats, booleans,
lists of scalars and lists of tables (written as inline tables). Reading uses ``tomllib``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _table(prefix: str, table: Mapping[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if prefix and (scalars or not tables):
        out.append(f"\n[{prefix}]")
    out += [f"{_key(k)} = {_scalar(v)}" for k, v in scalars.items() if v is not None]
    for key, sub in tables.items():
        _table(f"{prefix}.{_key(key)}" if prefix else _key(key), sub, out)


def dumps(document: Mapping[str, Any], *, header: str = "") -> str:
    """The TOML text of ``document``; ``header`` lines become comments on top."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    _table("", document, out)
    return "\n".join(out).lstrip("\n") + "\n"
